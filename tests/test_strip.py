"""``ingest/strip.py``: metadata leaves JPEG, PNG and WebP as they stream, however the
bytes are split, while pixels, orientation and the colour profile stay; a file it cannot
parse is stored exactly as sent."""

from __future__ import annotations

import io
import random
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image, MpoImagePlugin

from tests import imagegen
from tests.service_fixtures import unavailable
from tests.strip_helpers import (
    FORMATS,
    GPS,
    ICC,
    MODES,
    ORIENTATION,
    SIGNATURES,
    SPLITS,
    XMP_WITH_GPS,
    Source,
    _encode,
    _exif,
    _located,
    _strip,
    _tags,
)
from uploads_api.ingest.strip import stripper_for


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Source]:
    exif = _exif(tmp_path_factory.mktemp("exif"))
    return {fmt: _encode(fmt, exif) for fmt in FORMATS}


@pytest.fixture(scope="session")
def exiftool() -> str:
    path = shutil.which("exiftool")
    if path is None:
        unavailable(
            "exiftool is not installed (Debian: libimage-exiftool-perl; "
            "CI must list it in .ci/run's apt packages)"
        )
    assert path is not None
    return path


# What each mode keeps and drops -------------------------------------------------------------


def test_none_and_unknown_types_get_no_stripper() -> None:
    assert stripper_for("image/jpeg", "none") is None
    assert stripper_for("image/gif", "all") is None
    assert stripper_for("IMAGE/PNG; charset=binary", "location") is not None
    with pytest.raises(ValueError, match="strip mode"):
        stripper_for("image/jpeg", "gps")


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_goes_pixels_orientation_and_profile_stay(
    sources: dict[str, Source], fmt: str, mode: str, split: str
) -> None:
    source = sources[fmt]
    assert Image.open(io.BytesIO(source.data)).getexif().get_ifd(GPS), "the input has GPS"
    out, stripper = _strip(source.data, fmt, mode, split, seed=len(split))
    assert stripper.gave_up is None
    assert out == _strip(source.data, fmt, mode)[0], "the split never changes the output"
    img = Image.open(io.BytesIO(out))
    assert img.tobytes() == source.pixels
    assert img.info["icc_profile"] == ICC
    exif = img.getexif()
    assert exif[ORIENTATION] == 6
    assert exif.get_ifd(GPS) == {}
    if mode == "location":
        assert (exif[ExifTags.Base.Make], exif[ExifTags.Base.Model]) == ("Canon", "EOS Test")
        assert exif.get_ifd(ExifTags.IFD.Exif), "camera settings stay"
    else:
        assert set(exif) == {ORIENTATION}
    if fmt == "WEBP":
        assert len(out) == len(source.data), "RIFF sizes are written first: lengths stay"
    if fmt == "PNG":
        assert b"XML:com.adobe.xmp" not in out and b"Raw profile type" not in out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_exiftool_finds_no_location(
    sources: dict[str, Source], exiftool: str, tmp_path: Path, fmt: str, mode: str
) -> None:
    before = _tags(exiftool, sources[fmt].data, tmp_path)
    assert any(name.startswith("XMP:GPS") for name in before)
    assert any(name.startswith("EXIF:GPS") for name in before)
    tags = _tags(exiftool, _strip(sources[fmt].data, fmt, mode)[0], tmp_path)
    assert _located(tags) == []
    assert not [name for name in tags if name.startswith(("XMP", "ExifTool:Error"))]
    assert tags["EXIF:Orientation"] == 6
    comments = [name for name in tags if name.endswith(":Comment")]
    if mode == "location":
        assert tags["EXIF:Make"] == "Canon"
        assert comments or fmt == "WEBP", "comments are not a location"
    else:
        assert comments == []
        assert not [
            name for name in tags if name.startswith("EXIF:") and name != "EXIF:Orientation"
        ]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_both_byte_orders(tmp_path: Path, exiftool: str, fmt: str, mode: str, endian: str) -> None:
    source = _encode(fmt, _exif(tmp_path, endian), size=(32, 24))
    out = _strip(source.data, fmt, mode, "random")[0]
    exif = Image.open(io.BytesIO(out)).getexif()
    assert (exif.endian, exif[ORIENTATION], exif.get_ifd(GPS)) == (endian, 6, {})
    assert _located(_tags(exiftool, out, tmp_path)) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_all_without_orientation_keeps_no_exif(tmp_path: Path, fmt: str) -> None:
    exif = _exif(tmp_path)
    del exif[ORIENTATION]
    source = _encode(fmt, exif)
    out = _strip(source.data, fmt, "all", "random")[0]
    img = Image.open(io.BytesIO(out))
    assert (dict(img.getexif()), img.tobytes(), img.info["icc_profile"]) == ({}, source.pixels, ICC)
    if fmt != "WEBP":  # WebP keeps an empty EXIF chunk: its VP8X flag is already out
        assert b"Exif" not in out and b"eXIf" not in out


def test_webp_xmp_is_renamed_to_filler_and_its_flag_cleared(sources: dict[str, Source]) -> None:
    data = sources["WEBP"].data
    assert data[12:16] == b"VP8X" and data[20] & 0x04, "the input declares XMP"
    out = _strip(data, "WEBP", "location")[0]
    assert out[20] & 0x04 == 0
    assert out[20] | 0x04 == data[20], "no other flag changes"
    assert b"XMP " not in out and b"JUNK" in out
    assert out.count(XMP_WITH_GPS[:40]) == 0


def test_image_data_passes_as_views_of_the_input(sources: dict[str, Source]) -> None:
    for fmt, source in sources.items():
        stripper = stripper_for(source.content_type, "all")
        assert stripper is not None
        pieces = stripper.feed(source.data)
        viewed = sum(len(p) for p in pieces if isinstance(p, memoryview) and p.obj is source.data)
        assert viewed > len(source.data) // 2, fmt


# JPEG specifics: MPF, Photoshop resources, C2PA ------------------------------------------------


def _segment(code: int, body: bytes) -> bytes:
    return bytes((0xFF, code)) + struct.pack(">H", len(body) + 2) + body


def _after_app0(jpeg: bytes, *segments: bytes) -> bytes:
    assert jpeg[2:4] == b"\xff\xe0"
    at = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:at] + b"".join(segments) + jpeg[at:]


def _photoshop(*resources: tuple[int, bytes]) -> bytes:
    body = b"Photoshop 3.0\x00"
    for number, data in resources:
        body += b"8BIM" + struct.pack(">H", number) + b"\x00\x00" + struct.pack(">I", len(data))
        body += data + b"\x00" * (len(data) & 1)
    return _segment(0xED, body)


IPTC_CAPTION = b"\x1c\x02\x78" + struct.pack(">H", 7) + b"a quay."


@pytest.mark.parametrize(
    ("resources", "mode", "kept"),
    [
        ([(0x0404, IPTC_CAPTION)], "location", True),
        ([(0x0404, IPTC_CAPTION), (0x0424, XMP_WITH_GPS)], "location", False),
        ([(0x0404, IPTC_CAPTION)], "all", False),
    ],
)
def test_photoshop_segment_goes_when_it_can_hold_gps(
    sources: dict[str, Source],
    exiftool: str,
    tmp_path: Path,
    resources: list[tuple[int, bytes]],
    mode: str,
    kept: bool,
) -> None:
    segment = _photoshop(*resources)
    data = _after_app0(sources["JPEG"].data, segment)
    assert "XMP:GPSLatitude" in _tags(exiftool, data, tmp_path)
    out, stripper = _strip(data, "JPEG", mode, "bytes")
    assert stripper.gave_up is None
    assert (segment in out) is kept
    tags = _tags(exiftool, out, tmp_path)
    assert ("IPTC:Caption-Abstract" in tags) is kept
    assert _located(tags) == []


@pytest.mark.parametrize("mode", MODES)
def test_c2pa_manifests_go(sources: dict[str, Source], mode: str) -> None:
    jumbf = _segment(0xEB, b"JP\x00\x01\x00\x00\x00\x01" + b"\x00\x00\x00\x20jumbc2pa" + bytes(20))
    out = _strip(_after_app0(sources["JPEG"].data, jumbf), "JPEG", mode)[0]
    assert jumbf not in out
    assert Image.open(io.BytesIO(out)).tobytes() == sources["JPEG"].pixels


@pytest.mark.parametrize("split", ["bytes", "random"])
@pytest.mark.parametrize("mode", MODES)
def test_every_mpo_frame_is_stripped_and_still_found(
    exiftool: str, tmp_path: Path, mode: str, split: str
) -> None:
    """Pillow gives each frame the EXIF, GPS included, and writes COM after the MPF segment
    whose offsets find the second frame: that comment is blanked in place, not cut."""
    frames = [imagegen.gradient((64, 48)), imagegen.marked((64, 48))]
    sent = io.BytesIO()
    exif = _exif(tmp_path)
    frames[0].save(sent, "MPO", save_all=True, append_images=frames[1:], exif=exif, comment=b"hi")
    assert len(_located(_tags(exiftool, sent.getvalue(), tmp_path))) > 10
    out, stripper = _strip(sent.getvalue(), "JPEG", mode, split)
    assert stripper.gave_up is None
    assert _located(_tags(exiftool, out, tmp_path)) == []
    before, after = Image.open(sent), Image.open(io.BytesIO(out))
    assert isinstance(after, MpoImagePlugin.MpoImageFile)
    assert (after.n_frames, after.getexif()[ORIENTATION]) == (2, 6)
    assert after.info.get("comment") == (b"hi" if mode == "location" else None)
    for frame in range(2):
        before.seek(frame)
        after.seek(frame)
        assert after.tobytes() == before.tobytes()


# Bounded memory ---------------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_png_metadata_over_the_cap_is_dropped_as_it_streams(sources: dict[str, Source]) -> None:
    data = sources["PNG"].data
    big = _png_chunk(b"tEXt", b"Title\x00" + b"x" * 5000)
    data = data[:33] + big + data[33:]  # after IHDR
    for mode in MODES:
        out, stripper = _strip(data, "PNG", mode, "random", max_held=1024)
        assert big not in out and stripper.gave_up is None
        img = Image.open(io.BytesIO(out))
        assert (img.tobytes(), img.getexif().get_ifd(GPS)) == (sources["PNG"].pixels, {})


def test_webp_exif_over_the_cap_is_blanked_as_it_streams(sources: dict[str, Source]) -> None:
    source = sources["WEBP"]
    out, stripper = _strip(source.data, "WEBP", "location", "bytes", max_held=64)
    img = Image.open(io.BytesIO(out))
    assert (len(out), stripper.gave_up, img.tobytes()) == (len(source.data), None, source.pixels)
    assert b"EXIF" not in out and b"Canon" not in out


# Malformed input: passed through, never refused ------------------------------------------------


def _jpeg_exif_at(data: bytes) -> int:
    return data.index(b"\xff\xe1") + 4


@pytest.mark.parametrize(
    ("fmt", "cut_at"),
    [
        ("JPEG", lambda d: _jpeg_exif_at(d) + 30),  # inside the EXIF segment
        ("PNG", lambda d: d.index(b"iCCP") + 30),
        ("WEBP", lambda d: 22),  # inside VP8X
    ],
)
def test_a_truncated_file_is_passed_through(
    sources: dict[str, Source], fmt: str, cut_at: Any
) -> None:
    data = sources[fmt].data
    cut = data[: cut_at(data)]
    for split in SPLITS:
        out, stripper = _strip(cut, fmt, "all", split)
        assert out == cut
        assert stripper.gave_up is not None


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES)
def test_any_cut_is_survived(sources: dict[str, Source], fmt: str, mode: str) -> None:
    data = sources[fmt].data
    sos = data.find(b"\xff\xda") if fmt == "JPEG" else len(data)
    for end in range(1, len(data), 97):
        out, stripper = _strip(data[:end], fmt, mode, "random", seed=end)
        assert (stripper.gave_up is not None) == (end < sos + 2), end
        if fmt == "WEBP":
            assert len(out) == end


def test_jpeg_segment_running_past_the_end_is_passed_through() -> None:
    data = b"\xff\xd8\xff\xe1\xff\xf0Exif\x00\x00MM\x00*" + bytes(100)
    for mode in MODES:
        out, stripper = _strip(data, "JPEG", mode, "bytes")
        assert out == data and stripper.gave_up is not None


def test_unreadable_gps_is_reported_and_the_rest_still_stripped(
    sources: dict[str, Source],
) -> None:
    data = bytearray(sources["WEBP"].data)
    tiff = data.index(b"EXIF") + 8
    gps_entry = data.index(b"\x25\x88", tiff + 8)
    struct.pack_into("<I", data, gps_entry + 8, 10**6)
    out, stripper = _strip(bytes(data), "WEBP", "location", "random")
    assert stripper.gave_up == "EXIF: the GPS IFD lies outside the data"
    assert b"XMP " not in out and Image.open(io.BytesIO(out)).tobytes() == sources["WEBP"].pixels


def test_png_bad_chunk_length_is_passed_through(sources: dict[str, Source]) -> None:
    data = sources["PNG"].data
    bad = data[:33] + b"\xff\xff\xff\xfftEXt" + data[33:]
    out, stripper = _strip(bad, "PNG", "all", "random")
    assert out == bad
    assert stripper.gave_up == "PNG: a chunk header that is not one"


@pytest.mark.parametrize("fmt", FORMATS)
def test_garbage_after_the_signature_is_passed_through(fmt: str) -> None:
    garbage = b"\x00" + random.Random(7).randbytes(3000)
    data = SIGNATURES[fmt] + garbage
    for split in SPLITS:
        out, stripper = _strip(data, fmt, "all", split)
        assert out == data and stripper.gave_up is not None


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzzed_files_never_raise_and_never_depend_on_the_split(
    sources: dict[str, Source], fmt: str
) -> None:
    rng = random.Random(fmt)
    source = sources[fmt].data
    for trial in range(60):
        if trial % 3 == 0:
            data = SIGNATURES[fmt] + rng.randbytes(rng.randrange(1, 2000))
        else:  # a real file with a few bytes changed in its headers
            changed = bytearray(source)
            for _ in range(rng.randrange(1, 6)):
                changed[rng.randrange(len(changed) // 3)] = rng.randrange(256)
            data = bytes(changed)
        mode = MODES[trial % 2]
        whole, stripper = _strip(data, fmt, mode)
        split, again = _strip(data, fmt, mode, "random", seed=trial)
        assert (split, again.gave_up) == (whole, stripper.gave_up)
        assert "internal error" not in (stripper.gave_up or "")


# What a stripper reports ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("mode", "removed"), [("location", {"location"}), ("all", {"location", "metadata"})]
)
def test_a_stripper_says_what_it_found_and_removed(
    sources: dict[str, Source], fmt: str, mode: str, removed: set[str]
) -> None:
    _, stripper = _strip(sources[fmt].data, fmt, mode)
    assert stripper.removed == removed


@pytest.mark.parametrize("fmt", FORMATS)
def test_nothing_found_nothing_reported(fmt: str) -> None:
    # No EXIF, no XMP: no location found, and `location` mode reports nothing else.
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "navy").save(out, fmt)
    _, stripper = _strip(out.getvalue(), fmt, "location")
    assert stripper.removed == set()
