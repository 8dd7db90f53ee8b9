"""The engine under the metadata strippers (``strip.py``): an incremental walk over an
upload's chunks, split anywhere, that streams runs of bytes (passed, dropped or zeroed) and
holds just the bytes its next handler asked for. A format subclasses ``Walker`` with its
handlers; what it cannot parse goes out as it came, and ``gave_up`` says why."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from uploads_api.ingest.exif_patch import has_location

Piece = bytes | memoryview
ZEROS = memoryview(bytes(64 * 1024))


class Malformed(Exception):
    """The structure is not what the format says: pass the rest through."""


Handler = Callable[[bytearray], None]


class Walker:
    """Drives a format's handlers over chunks split anywhere: streams a run of bytes (passed,
    dropped or zeroed), then holds bytes until the next handler has all it asked for.
    ``_held`` is input not yet answered for: giving up sends it out as it came."""

    def __init__(self, *, strip_all: bool, max_held: int) -> None:
        self.strip_all = strip_all
        self.max_held = max_held
        self.gave_up: str | None = None
        self.removed: set[str] = set()
        self._out: list[Piece] = []
        self._held = bytearray()
        self._want = 0
        self._handler: Handler | None = None  # None: all that follows passes through
        self._action: Literal["pass", "drop", "zero"] = "pass"
        self._count = 0
        self._until: re.Pattern[bytes] | None = None
        self._tail = b""
        self._rest = False  # the file may end here
        self._start()

    def _start(self) -> None: ...

    def feed(self, data: Piece) -> list[Piece]:
        view = memoryview(data)
        out = self._out = []
        pos, size = 0, len(view)
        while pos < size:
            if self._count:
                step = min(self._count, size - pos)
                if self._action == "pass":
                    out.append(view[pos : pos + step])
                elif self._action == "zero":
                    self._zeros(step)
                self._count -= step
                pos += step
            elif self._until is not None:
                pos = self._pass_until(self._until, view, pos)
            elif self._handler is None:
                out.append(view[pos:])
                break
            else:
                step = min(self._want - len(self._held), size - pos)
                self._held += view[pos : pos + step]
                pos += step
                if len(self._held) == self._want:
                    self._run(self._handler)
        return out

    def finish(self) -> list[Piece]:
        out = self._out = []
        if self._count or not (self._handler is None or self._rest):
            self._note("the file ends inside its headers or a chunk")
        if self._held:
            out.append(memoryview(self._held))
        self._held, self._count, self._handler, self._until = bytearray(), 0, None, None
        return out

    def _pass_until(self, pattern: re.Pattern[bytes], view: memoryview, pos: int) -> int:
        """Pass bytes on up to the end of ``pattern`` (two bytes long), searched in C and
        without a copy; ``_tail`` keeps the last byte, for a match split between chunks."""
        split = bool(self._tail) and pattern.fullmatch(self._tail + view[pos : pos + 1].tobytes())
        found = None if split else pattern.search(view, pos)
        end = pos + 1 if split else len(view) if found is None else found.end()
        self._out.append(view[pos:end])
        if split or found is not None:
            self._until, self._tail = None, b""
        else:
            self._tail = view[-1:].tobytes()
        return end

    def _run(self, handler: Handler) -> None:
        held = self._held
        try:
            handler(held)
        except Exception as exc:
            # Malformed input raises before anything changed: ``held`` is as it came. Any
            # other error is a bug here, and still no reason to refuse or cut the upload.
            bug = not isinstance(exc, Malformed)
            self._note(f"internal error: {exc!r}" if bug else str(exc))
            self._out.append(memoryview(held))
            self._held, self._count, self._handler, self._until = bytearray(), 0, None, None

    def _found(self, removed: memoryview) -> None:
        """Note what a removed segment held: a location if it names GPS tags (XMP's
        ``exif:GPSLatitude``...), other metadata otherwise."""
        if b"GPS" in removed.tobytes():
            self.removed.add("location")
        if self.strip_all:
            self.removed.add("metadata")

    def _found_exif(self, tiff: memoryview) -> None:
        if has_location(tiff):
            self.removed.add("location")
        if self.strip_all:
            self.removed.add("metadata")

    def _note(self, reason: str | None) -> None:
        if self.gave_up is None:
            self.gave_up = reason

    # What a handler does next: exactly one of _expect, _more and _end, after any _stream.

    def _expect(self, size: int, handler: Handler) -> None:
        """Hold the next ``size`` bytes, then call ``handler`` with them."""
        self._held, self._want, self._handler = bytearray(), size, handler

    def _more(self, size: int, handler: Handler) -> None:
        """Hold ``size`` more bytes after those held, then call ``handler`` with them all."""
        self._want, self._handler = len(self._held) + size, handler

    def _end(self) -> None:
        self._held, self._handler = bytearray(), None

    def _stream(self, action: Literal["pass", "drop", "zero"], count: int) -> None:
        self._action, self._count = action, count

    def _emit(self, piece: Piece | bytearray) -> None:
        self._out.append(memoryview(piece) if isinstance(piece, bytearray) else piece)

    def _zeros(self, count: int) -> None:
        for start in range(0, count, len(ZEROS)):
            self._out.append(ZEROS[: min(len(ZEROS), count - start)])
