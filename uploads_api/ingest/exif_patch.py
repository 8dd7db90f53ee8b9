"""EXIF edits for ``strip.py``, on the TIFF structure that JPEG (after ``Exif\\0\\0``), PNG
(``eXIf``) and WebP (``EXIF``) all carry; and a look into Photoshop's JPEG resources,
which can carry EXIF and XMP too.

``clear_location`` works in place and keeps the length, so a container whose sizes are
already written (WebP's RIFF header) stays valid. Every offset read from the data is
bounds-checked: the bytes come from whoever uploads them.
"""

from __future__ import annotations

import struct

GPS_IFD = 0x8825
ORIENTATION = 0x0112
XML_PACKET = 0x02BC  # XMP inside IFD0 (TIFF files, some JPEGs): it can hold GPS too

# Bytes per value of each TIFF field type; an unknown type's data is not followed.
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_ORDERS = {b"II": "<", b"MM": ">"}

_PHOTOSHOP_ID = b"Photoshop 3.0\x00"
# Photoshop resources that can hold GPS: two kinds of EXIF, and XMP.
_LOCATED_RESOURCES = (0x0422, 0x0423, 0x0424)

# What a TIFF with nothing in it looks like: header, IFD0 with no entries, no next IFD.
EMPTY_TIFF = b"II*\x00\x08\x00\x00\x00" + b"\x00" * 6


class _Tiff:
    """Bounds-checked reads of a TIFF held in ``data``."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.order = _ORDERS.get(bytes(data[:2]), "")
        if not self.order or len(data) < 8 or self.u16(2) != 42:
            raise ValueError("not a TIFF header")

    def u16(self, at: int) -> int:
        value: int = struct.unpack_from(self.order + "H", self.data, at)[0]
        return value

    def u32(self, at: int) -> int:
        value: int = struct.unpack_from(self.order + "I", self.data, at)[0]
        return value

    def entries(self, ifd: int) -> tuple[list[int], bool]:
        """Offsets of the 12-byte entries of the IFD at ``ifd`` that lie in the data, and
        whether all that its count announces do."""
        size = len(self.data)
        if ifd < 8 or ifd + 2 > size:
            return [], False
        count = self.u16(ifd)
        first = ifd + 2
        whole = min(count, (size - first) // 12)
        return [first + 12 * i for i in range(whole)], whole == count

    def zero(self, start: int, end: int) -> None:
        start, end = max(start, 0), min(end, len(self.data))
        if start < end:
            self.data[start:end] = bytes(end - start)

    def value_span(self, entry: int) -> tuple[int, int] | None:
        """Where an entry's value lies when it does not fit in the entry itself."""
        kind, count = self.u16(entry + 2), self.u32(entry + 4)
        size = _TYPE_SIZES.get(kind, 0) * count
        if size <= 4:
            return None
        start = self.u32(entry + 8)
        return start, start + size


def has_location(data: memoryview) -> bool:
    """Whether the TIFF in ``data`` points to a GPS IFD with entries in it."""
    try:
        tiff = _Tiff(data)
        entries, _ = tiff.entries(tiff.u32(4))
        for entry in entries:
            if tiff.u16(entry) == GPS_IFD:
                ifd = tiff.u32(entry + 8)
                if 8 <= ifd <= len(data) - 2 and tiff.u16(ifd) > 0:
                    return True
    except (ValueError, IndexError, struct.error):
        return False
    return False


def clear_location(data: memoryview) -> str | None:
    """Empty the GPS IFD of the TIFF in ``data`` (writable), and the XMP packet of IFD0,
    keeping every length. Returns None when no reader can find a location in it any more,
    else why one may be left (data the GPS pointer cannot be followed to is left as is)."""
    try:
        tiff = _Tiff(data)
    except ValueError as exc:
        return f"EXIF: {exc}"
    entries, complete = tiff.entries(tiff.u32(4))
    gps = [e for e in entries if tiff.u16(e) == GPS_IFD]
    if not gps and not complete:
        return "EXIF: IFD0 runs past the end, its GPS pointer cannot be found"
    for entry in entries:
        if tiff.u16(entry) == XML_PACKET:
            span = tiff.value_span(entry)
            if span is not None and span[0] >= 8:
                tiff.zero(*span)
            tiff.zero(entry + 4, entry + 12)  # count 0: an empty packet
    problem = None
    for entry in gps:
        ifd = tiff.u32(entry + 8)
        if not 8 <= ifd <= len(data) - 2:
            problem = "EXIF: the GPS IFD lies outside the data"
            continue
        _zero_ifd(tiff, ifd)
    return problem


def _zero_ifd(tiff: _Tiff, ifd: int) -> None:
    """Zero an IFD's entries, the values they point to, and its count, as far as they lie
    in the data: what is left reads as an IFD with no entries."""
    count = tiff.u16(ifd)
    entries, _ = tiff.entries(ifd)
    for entry in entries:
        span = tiff.value_span(entry)
        if span is not None and span[0] >= 8:
            tiff.zero(*span)
    # The count, every entry (a partial last one too) and the next-IFD pointer.
    tiff.zero(ifd, ifd + 2 + 12 * count + 4)


def orientation_only(data: memoryview) -> bytes | None:
    """A minimal TIFF, in ``data``'s byte order, whose IFD0 holds only ``data``'s
    Orientation entry; None if it has none, or none that can be read."""
    try:
        tiff = _Tiff(data)
    except ValueError:
        return None
    entries, _ = tiff.entries(tiff.u32(4))
    for entry in entries:
        # A SHORT, one value: anything else is not an orientation a reader would use.
        if tiff.u16(entry) == ORIENTATION and tiff.u16(entry + 2) == 3 and tiff.u32(entry + 4) == 1:
            head = bytes(data[:4]) + struct.pack(tiff.order + "IH", 8, 1)
            return head + bytes(data[entry : entry + 12]) + b"\x00" * 4
    return None


def orientation_in_place(data: memoryview) -> None:
    """Overwrite the TIFF in ``data`` with its ``orientation_only`` (or an empty TIFF),
    zero-padded: the length stays. Too short for either, it is all zeroed."""
    tiff = orientation_only(data) or EMPTY_TIFF
    if len(tiff) > len(data):
        tiff = b""
    data[:] = tiff + bytes(len(data) - len(tiff))


def bare_tiff(data: memoryview) -> memoryview:
    """EXIF in PNG and WebP is a bare TIFF, but some writers keep JPEG's ``Exif\\0\\0``."""
    return data[6:] if data[:6].tobytes() == b"Exif\x00\x00" else data


def photoshop_has_location(body: memoryview) -> bool:
    """Whether a Photoshop APP13 segment holds resources that can carry GPS, or cannot be
    read well enough to tell."""
    if body[: len(_PHOTOSHOP_ID)].tobytes() != _PHOTOSHOP_ID:
        return False
    pos, size = len(_PHOTOSHOP_ID), len(body)
    while pos + 12 <= size:
        if body[pos : pos + 4].tobytes() != b"8BIM":
            return True
        resource = int.from_bytes(body[pos + 4 : pos + 6], "big")
        pos += 6 + ((body[pos + 6] + 2) & ~1)  # a Pascal name, padded to even
        if pos + 4 > size:
            return True
        length = int.from_bytes(body[pos : pos + 4], "big")
        pos += 4 + length + (length & 1)
        if resource in _LOCATED_RESOURCES or pos > size + 1:
            return True
    return False
