"""``UPLOADS_STRIP_METADATA`` for JPEG, PNG and WebP, applied while the upload streams in:
``location`` removes GPS; ``all`` removes EXIF, XMP, IPTC and comments but the orientation
and the colour profile. Pixels are never re-encoded.

A stripper is an incremental parser with no I/O. It runs on the event loop for every chunk,
so image data goes out as slices of the chunks fed, and one metadata segment at most is
held (JPEG's are under 64 KiB; larger PNG and WebP ones are dropped or blanked as they
stream). What it cannot parse is passed through unchanged, and ``gave_up`` says why: a
strange file is stored as sent, never refused or cut."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from typing import Literal, Protocol

from uploads_api.ingest.exif_patch import (
    bare_tiff,
    clear_location,
    orientation_in_place,
    orientation_only,
    photoshop_has_location,
)

Piece = bytes | memoryview
MODES = ("none", "location", "all")
MAX_HELD = 1024 * 1024

_ZEROS = memoryview(bytes(64 * 1024))
_EOI = re.compile(b"\xff\xd9")
_EXIF_ID = b"Exif\x00"
_XMP_IDS = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT = (b"tEXt", b"zTXt", b"iTXt")
# C2PA manifests (any edit breaks their signature, and they can hold a location), and
# ImageMagick's pre-standard EXIF chunks, which cannot be patched.
_PNG_DROPPED = (b"caBX", b"exIf", b"zxIf")
_RAW_PROFILE = b"Raw profile type "
_WEBP_XMP_FLAG = 0x04
# The RIFF name for filler: readers skip it, as the WebP spec asks of any unknown chunk.
_WEBP_FILLER = b"JUNK"


class Stripper(Protocol):
    """Fed an upload's chunks in order, returns the file to store in order, in pieces that
    may be views of the chunks fed. ``finish`` (once, at the end) returns what was held.
    ``gave_up``, to log, says why part of the file was stored unchanged."""

    @property
    def gave_up(self) -> str | None: ...

    def feed(self, data: Piece) -> list[Piece]: ...

    def finish(self) -> list[Piece]: ...


def stripper_for(content_type: str, mode: str, *, max_held: int = MAX_HELD) -> Stripper | None:
    """A stripper for a (sniffed) content type, or None if ``mode`` is ``none`` or the type
    is not one this module edits."""
    if mode not in MODES:
        raise ValueError(f"strip mode {mode!r} is not one of {', '.join(MODES)}")
    walker = _WALKERS.get(content_type.partition(";")[0].strip().lower())
    if mode == "none" or walker is None:
        return None
    return walker(strip_all=mode == "all", max_held=max_held)


class _Malformed(Exception):
    """The structure is not what the format says: pass the rest through."""


Handler = Callable[[bytearray], None]


class _Walker:
    """Drives a format's handlers over chunks split anywhere: streams a run of bytes (passed,
    dropped or zeroed), then holds bytes until the next handler has all it asked for.
    ``_held`` is input not yet answered for: giving up sends it out as it came."""

    def __init__(self, *, strip_all: bool, max_held: int) -> None:
        self.strip_all = strip_all
        self.max_held = max_held
        self.gave_up: str | None = None
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
            bug = not isinstance(exc, _Malformed)
            self._note(f"internal error: {exc!r}" if bug else str(exc))
            self._out.append(memoryview(held))
            self._held, self._count, self._handler, self._until = bytearray(), 0, None, None

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
        for start in range(0, count, len(_ZEROS)):
            self._out.append(_ZEROS[: min(len(_ZEROS), count - start)])


class _Jpeg(_Walker):
    """Markers from SOI to SOS, then entropy-coded data, in each image of the file."""

    def _start(self) -> None:
        # After MPF, whose offsets find the images after EOI, segments are blanked, not cut.
        self._mpf = False
        self._body = 0
        self._expect(2, self._image)

    def _marker(self, held: bytearray) -> None:
        if held[0] != 0xFF:
            raise _Malformed("JPEG: no marker where one was due")
        code = held[-1]
        if code == 0xFF:  # a fill byte
            if len(held) > 64:
                raise _Malformed("JPEG: a run of fill bytes")
            self._more(1, self._marker)
        elif code in (0xDA, 0xD9):  # SOS, or EOI before any scan
            self._emit(held)
            self._next_image(scan=code == 0xDA)
        elif code == 0x01 or 0xD0 <= code <= 0xD7:  # no length follows
            self._emit(held)
            self._expect(2, self._marker)
        elif code in (0x00, 0xD8):
            raise _Malformed(f"JPEG: marker FF{code:02X} among the headers")
        else:
            self._more(2, self._length)

    def _next_image(self, *, scan: bool) -> None:
        """Entropy-coded data passes through up to EOI. Then another image may follow (MPO
        frames, MPF previews, gain maps) with metadata of its own, GPS included."""
        self._until = _EOI if scan else None
        self._rest = True
        self._expect(2, self._image)

    def _image(self, held: bytearray) -> None:
        if held != b"\xff\xd8" and not self._rest:
            raise _Malformed("JPEG: no SOI marker")
        self._emit(held)
        if held != b"\xff\xd8":  # not an image: look further
            self._next_image(scan=True)
            self._tail = bytes(held[-1:])
            return
        # A later image is found by the first one's MPF index: keep every length in it.
        self._mpf, self._rest = self._mpf or self._rest, False
        self._expect(2, self._marker)

    def _length(self, held: bytearray) -> None:
        length = int.from_bytes(held[-2:], "big")
        if length < 2:
            raise _Malformed("JPEG: a segment length under 2")
        code = held[-3]
        if 0xE0 <= code <= 0xEF or code == 0xFE:  # APPn and COM: metadata
            self._body = length - 2
            self._more(length - 2, self._segment)
        else:
            self._emit(held)
            self._stream("pass", length - 2)
            self._expect(2, self._marker)

    def _segment(self, held: bytearray) -> None:
        start = len(held) - self._body
        code, body = held[start - 3], memoryview(held)[start:]
        if code == 0xE1 and _starts(body, _EXIF_ID):
            self._exif(held, body)
        elif self._removed(code, body):
            if self._mpf:
                self._emit(b"\xff\xef" + held[start - 2 : start] + bytes(self._body))
        else:
            self._mpf = self._mpf or (code == 0xE2 and _starts(body, b"MPF\x00"))
            self._emit(held)
        self._expect(2, self._marker)

    def _removed(self, code: int, body: memoryview) -> bool:
        if code == 0xE1:
            return any(_starts(body, prefix) for prefix in _XMP_IDS)
        if code == 0xEB:  # JUMBF: C2PA manifests, which any edit invalidates
            return _starts(body, b"JP")
        if code == 0xED:
            return self.strip_all or photoshop_has_location(body)
        return code == 0xFE and self.strip_all

    def _exif(self, held: bytearray, body: memoryview) -> None:
        tiff = body[6:]
        if not self.strip_all:
            self._note(clear_location(tiff))
            self._emit(held)
            return
        if self._mpf:
            orientation_in_place(tiff)
            self._emit(held)
        elif (kept := orientation_only(tiff)) is not None:
            self._emit(b"\xff\xe1" + struct.pack(">H", 8 + len(kept)) + b"Exif\x00\x00" + kept)


class _Png(_Walker):
    """Chunks after the signature, up to IEND; what follows IEND passes through."""

    def _start(self) -> None:
        self._expect(8, self._signature)

    def _signature(self, held: bytearray) -> None:
        if held != _PNG_SIGNATURE:
            raise _Malformed("PNG: no signature")
        self._emit(held)
        self._expect(8, self._chunk)

    def _chunk(self, held: bytearray) -> None:
        length, kind = int.from_bytes(held[:4], "big"), bytes(held[4:8])
        if length > 0x7FFFFFFF or not kind.isalpha():
            raise _Malformed("PNG: a chunk header that is not one")
        if kind in (b"eXIf", *_PNG_TEXT) and length <= self.max_held:
            self._more(length + 4, self._exif if kind == b"eXIf" else self._text)
            return
        if kind in (b"eXIf", *_PNG_TEXT, *_PNG_DROPPED):  # too large to hold: dropped
            self._stream("drop", length + 4)
        else:
            self._emit(held)
            self._stream("pass", length + 4)
        if kind == b"IEND":
            self._end()
        else:
            self._expect(8, self._chunk)

    def _text(self, held: bytearray) -> None:
        keyword = bytes(held[8:88]).partition(b"\x00")[0]
        if keyword.startswith(_RAW_PROFILE):  # ImageMagick's EXIF, XMP, IPTC... or ICC
            removed = keyword[len(_RAW_PROFILE) :] not in (b"icc", b"icm")
        else:
            removed = self.strip_all or keyword == b"XML:com.adobe.xmp"
        if not removed:
            self._emit(held)
        self._expect(8, self._chunk)

    def _exif(self, held: bytearray) -> None:
        tiff = bare_tiff(memoryview(held)[8:-4])
        if not self.strip_all:
            self._note(clear_location(tiff))
            crc = zlib.crc32(memoryview(held)[4:-4])
            struct.pack_into(">I", held, len(held) - 4, crc)
            self._emit(held)
        elif (kept := orientation_only(tiff)) is not None:
            crc = zlib.crc32(b"eXIf" + kept)
            self._emit(struct.pack(">I", len(kept)) + b"eXIf" + kept + struct.pack(">I", crc))
        self._expect(8, self._chunk)


class _Webp(_Walker):
    """Chunks of the RIFF container. Its size is written before the rest arrives, so no
    chunk changes length: metadata is overwritten in place, or renamed to filler."""

    def _start(self) -> None:
        self._left = 0
        self._expect(12, self._riff)

    def _riff(self, held: bytearray) -> None:
        if held[:4] != b"RIFF" or held[8:] != b"WEBP":
            raise _Malformed("WebP: no RIFF WEBP header")
        self._left = int.from_bytes(held[4:8], "little") - 4
        self._emit(held)
        self._next()

    def _next(self) -> None:
        if self._left > 0:
            self._expect(8, self._chunk)
        else:  # past the RIFF size: not ours to parse
            self._end()

    def _chunk(self, held: bytearray) -> None:
        kind, size = bytes(held[:4]), int.from_bytes(held[4:8], "little")
        padded = size + (size & 1)
        self._left -= 8 + padded
        if kind == b"VP8X" and size == 10:
            self._more(10, self._vp8x)
            return
        if kind == b"EXIF" and padded <= self.max_held:
            self._more(padded, self._exif)
            return
        if kind in (b"EXIF", b"XMP ", b"C2PA"):
            self._emit(_WEBP_FILLER + held[4:8])
            self._stream("zero", padded)
        else:
            self._emit(held)
            self._stream("pass", padded)
        self._next()

    def _vp8x(self, held: bytearray) -> None:
        # XMP always goes. The EXIF flag stays: an EXIF chunk, if any, always stays too.
        held[8] &= ~_WEBP_XMP_FLAG & 0xFF
        self._emit(held)
        self._next()

    def _exif(self, held: bytearray) -> None:
        size = int.from_bytes(held[4:8], "little")
        tiff = bare_tiff(memoryview(held)[8 : 8 + size])
        if not self.strip_all:
            self._note(clear_location(tiff))
        else:
            orientation_in_place(tiff)
        self._emit(held)
        self._next()


def _starts(data: memoryview, prefix: bytes) -> bool:
    return data[: len(prefix)].tobytes() == prefix


_WALKERS: dict[str, Callable[..., _Walker]] = {
    "image/jpeg": _Jpeg,
    "image/png": _Png,
    "image/webp": _Webp,
}
