"""``ingest/exif_patch.py`` on its own: clearing the location empties the GPS IFD in place,
keeping the EXIF's length, and reports or leaves alone what it cannot read; keeping only the
orientation keeps the byte order."""

from __future__ import annotations

import struct
from pathlib import Path

from PIL import ExifTags, Image

from tests.strip_helpers import GPS, ORIENTATION, _exif
from uploads_api.ingest.exif_patch import clear_location, orientation_only


def _tiff(exif: Image.Exif) -> bytearray:
    return bytearray(exif.tobytes()[6:])


def test_location_patch_keeps_the_length_and_empties_gps(tmp_path: Path) -> None:
    data = _tiff(_exif(tmp_path, ">"))
    size = len(data)
    assert clear_location(memoryview(data)) is None
    assert len(data) == size
    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + bytes(data))
    assert exif.get_ifd(GPS) == {} and exif[ExifTags.Base.Make] == "Canon"
    assert b"GPSLatitude" not in data, "the XMP packet in IFD0 went too"


def test_location_patch_leaves_what_it_cannot_read(tmp_path: Path) -> None:
    good = _tiff(_exif(tmp_path))
    cases = {
        "not a TIFF": b"XX" + good[2:],
        "IFD0 past the end": good[:4] + struct.pack("<I", len(good) + 10) + good[8:],
        "IFD0 cut short": good[:14],
    }
    for name, data in cases.items():
        copy = bytearray(data)
        assert clear_location(memoryview(copy)) is not None, name
        assert copy == data, name


def test_gps_ifd_out_of_bounds_is_reported(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.endian = "<"
    exif[ORIENTATION] = 1
    exif[GPS] = {ExifTags.GPS.GPSLatitudeRef: "N"}
    data = _tiff(exif)
    struct.pack_into("<I", data, data.index(b"\x25\x88", 8) + 8, 10**6)
    assert clear_location(memoryview(data)) == "EXIF: the GPS IFD lies outside the data"


def test_gps_ifd_running_past_the_end_is_zeroed_as_far_as_it_goes(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.endian = "<"
    exif[GPS] = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (1.0, 2.0, 3.0)}
    data = _tiff(exif)
    gps_at = struct.unpack_from("<I", data, data.index(b"\x25\x88", 8) + 8)[0]
    struct.pack_into("<H", data, gps_at, 999)
    assert clear_location(memoryview(data)) is None
    assert data[gps_at:].count(0) == len(data) - gps_at


def test_orientation_only_keeps_the_byte_order(tmp_path: Path) -> None:
    for endian in "<>":
        kept = orientation_only(memoryview(_tiff(_exif(tmp_path, endian))))
        assert kept is not None and len(kept) == 26
        exif = Image.Exif()
        exif.load(b"Exif\x00\x00" + kept)
        assert (dict(exif), exif.endian) == ({ORIENTATION: 6}, endian)
    assert orientation_only(memoryview(b"II*\x00\x08\x00\x00\x00\x00\x00")) is None
