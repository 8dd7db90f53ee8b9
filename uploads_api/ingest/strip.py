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
from typing import Protocol

from uploads_api.ingest.chunk_walker import Malformed, Piece, Walker
from uploads_api.ingest.exif_patch import (
    bare_tiff,
    clear_location,
    orientation_in_place,
    orientation_only,
    photoshop_has_location,
)

MODES = ("none", "location", "all")
MAX_HELD = 1024 * 1024

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

    @property
    def removed(self) -> set[str]:
        """What was found and taken out: ``location`` (GPS, or an XMP packet naming GPS
        tags), ``metadata`` (anything else, with ``all``)."""
        ...

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


class _Jpeg(Walker):
    """Markers from SOI to SOS, then entropy-coded data, in each image of the file."""

    def _start(self) -> None:
        # After MPF, whose offsets find the images after EOI, segments are blanked, not cut.
        self._mpf = False
        self._body = 0
        self._expect(2, self._image)

    def _marker(self, held: bytearray) -> None:
        if held[0] != 0xFF:
            raise Malformed("JPEG: no marker where one was due")
        code = held[-1]
        if code == 0xFF:  # a fill byte
            if len(held) > 64:
                raise Malformed("JPEG: a run of fill bytes")
            self._more(1, self._marker)
        elif code in (0xDA, 0xD9):  # SOS, or EOI before any scan
            self._emit(held)
            self._next_image(scan=code == 0xDA)
        elif code == 0x01 or 0xD0 <= code <= 0xD7:  # no length follows
            self._emit(held)
            self._expect(2, self._marker)
        elif code in (0x00, 0xD8):
            raise Malformed(f"JPEG: marker FF{code:02X} among the headers")
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
            raise Malformed("JPEG: no SOI marker")
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
            raise Malformed("JPEG: a segment length under 2")
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
        removed = self._removes(code, body)
        if removed:
            self._found(body)
        return removed

    def _removes(self, code: int, body: memoryview) -> bool:
        if code == 0xE1:
            return any(_starts(body, prefix) for prefix in _XMP_IDS)
        if code == 0xEB:  # JUMBF: C2PA manifests, which any edit invalidates
            return _starts(body, b"JP")
        if code == 0xED:
            return self.strip_all or photoshop_has_location(body)
        return code == 0xFE and self.strip_all

    def _exif(self, held: bytearray, body: memoryview) -> None:
        tiff = body[6:]
        self._found_exif(tiff)
        if not self.strip_all:
            self._note(clear_location(tiff))
            self._emit(held)
            return
        if self._mpf:
            orientation_in_place(tiff)
            self._emit(held)
        elif (kept := orientation_only(tiff)) is not None:
            self._emit(b"\xff\xe1" + struct.pack(">H", 8 + len(kept)) + b"Exif\x00\x00" + kept)


class _Png(Walker):
    """Chunks after the signature, up to IEND; what follows IEND passes through."""

    def _start(self) -> None:
        self._expect(8, self._signature)

    def _signature(self, held: bytearray) -> None:
        if held != _PNG_SIGNATURE:
            raise Malformed("PNG: no signature")
        self._emit(held)
        self._expect(8, self._chunk)

    def _chunk(self, held: bytearray) -> None:
        length, kind = int.from_bytes(held[:4], "big"), bytes(held[4:8])
        if length > 0x7FFFFFFF or not kind.isalpha():
            raise Malformed("PNG: a chunk header that is not one")
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
        if removed:
            self._found(memoryview(held))
        else:
            self._emit(held)
        self._expect(8, self._chunk)

    def _exif(self, held: bytearray) -> None:
        tiff = bare_tiff(memoryview(held)[8:-4])
        self._found_exif(tiff)
        if not self.strip_all:
            self._note(clear_location(tiff))
            crc = zlib.crc32(memoryview(held)[4:-4])
            struct.pack_into(">I", held, len(held) - 4, crc)
            self._emit(held)
        elif (kept := orientation_only(tiff)) is not None:
            crc = zlib.crc32(b"eXIf" + kept)
            self._emit(struct.pack(">I", len(kept)) + b"eXIf" + kept + struct.pack(">I", crc))
        self._expect(8, self._chunk)


class _Webp(Walker):
    """Chunks of the RIFF container. Its size is written before the rest arrives, so no
    chunk changes length: metadata is overwritten in place, or renamed to filler."""

    def _start(self) -> None:
        self._left = 0
        self._expect(12, self._riff)

    def _riff(self, held: bytearray) -> None:
        if held[:4] != b"RIFF" or held[8:] != b"WEBP":
            raise Malformed("WebP: no RIFF WEBP header")
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
        self._found_exif(tiff)
        if not self.strip_all:
            self._note(clear_location(tiff))
        else:
            orientation_in_place(tiff)
        self._emit(held)
        self._next()


def _starts(data: memoryview, prefix: bytes) -> bool:
    return data[: len(prefix)].tobytes() == prefix


_WALKERS: dict[str, Callable[..., Walker]] = {
    "image/jpeg": _Jpeg,
    "image/png": _Png,
    "image/webp": _Webp,
}
