"""Audio metadata and cover-art thumbnails (media/audio.py), on files made by
tests/audio_helpers.py: a 2 s sine encoded with PyAV, then tagged with mutagen. No binary
fixtures, no network.

Files are written without an extension, as storage keeps them: mutagen must find the
format from the content alone.
"""

from __future__ import annotations

import base64
import random
import re
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mutagen
import pytest
from PIL import Image

from tests.audio_helpers import BLUE, KINDS, RED, encode, image_bytes, tag
from uploads_api.media.audio import (
    MAX_TAG_CHARS,
    AudioError,
    NoCover,
    make_audio_thumbnails,
    read_audio_metadata,
)
from uploads_api.media.images import ImageError, Rendition

SIZES = [256, 1024]
ALLOWED = ("JPEG", "PNG")
MAX_PIXELS = 50_000_000

TAGS = {
    "title": "Sine in A",
    "artist": "Test Artist",
    "album": "Fixtures",
    "track": "3/12",
    "date": "2019-05-01",
    "genre": "Electronic",
}
EXPECTED_TAGS = {
    "title": "Sine in A",
    "artist": "Test Artist",
    "album": "Fixtures",
    "track": 3,
    "year": 2019,
    "genre": "Electronic",
}


@pytest.fixture(scope="session")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each container encoded once; tests tag copies."""
    folder = tmp_path_factory.mktemp("audio")
    return {name: encode(folder / name, kind) for name, kind in KINDS.items()}


Fresh = Callable[[str], Path]


@pytest.fixture
def fresh(encoded: dict[str, Path], tmp_path: Path) -> Fresh:
    """A copy of one encoded file, as ``tmp_path/upload``, to tag and spoil."""

    def copy(name: str) -> Path:
        return Path(shutil.copyfile(encoded[name], tmp_path / "upload"))

    return copy


def thumbnails(src: Path, out_dir: Path, **limits: Any) -> list[Rendition]:
    out_dir.mkdir(exist_ok=True)
    limits.setdefault("max_pixels", MAX_PIXELS)
    return make_audio_thumbnails(str(src), str(out_dir), SIZES, "webp", ALLOWED, **limits)


# --- metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", KINDS)
def test_metadata_of_each_container(name: str, fresh: Fresh) -> None:
    kind = KINDS[name]
    src = tag(fresh(name), TAGS)
    head = src.read_bytes()[:16]
    assert re.match(kind.magic, head, re.DOTALL), head
    meta = read_audio_metadata(str(src))
    assert meta.keys() == {"duration", "bit_rate", "sample_rate", "channels", "tags"}
    assert meta["duration"] == pytest.approx(2.0, abs=0.1)
    assert meta["sample_rate"] == kind.rate
    assert meta["channels"] == kind.channels
    if kind.has_bit_rate:
        assert isinstance(meta["bit_rate"], int) and meta["bit_rate"] > 0
    else:
        assert meta["bit_rate"] is None
    assert meta["tags"] == EXPECTED_TAGS


@pytest.mark.parametrize("name", KINDS)
def test_untagged_file_has_empty_tags(name: str, fresh: Fresh) -> None:
    assert read_audio_metadata(str(fresh(name)))["tags"] == {}


def test_mp3_without_id3_is_found_by_its_frame_sync(tmp_path: Path) -> None:
    src = encode(tmp_path / "upload", KINDS["mp3"], muxer_options={"id3v2_version": "0"})
    assert src.read_bytes()[:2] == b"\xff\xfb"  # MPEG-1 layer III, no CRC
    assert read_audio_metadata(str(src))["sample_rate"] == 44100


@pytest.mark.parametrize(
    ("name", "tags", "expected"),
    [
        # Controls go (PostgreSQL refuses NUL; in ID3, NUL separates values), long values
        # are cut, ID3 genre numbers are named, a track or year that is no number stays.
        ("mp3", {"title": "a\tb\x07c \n", "genre": "(13)"}, {"title": "a b c", "genre": "Pop"}),
        ("flac", {"title": "x" * 10_000}, {"title": "x" * MAX_TAG_CHARS}),
        ("ogg", {"title": "a\x00b", "date": "May 2019"}, {"title": "a b", "year": "May 2019"}),
        ("opus", {"track": "A1", "date": "2019-05"}, {"track": "A1", "year": 2019}),
        ("m4a", {"track": "7/0", "date": "1999"}, {"track": 7, "year": 1999}),
        ("wav", {"track": "05", "title": "   "}, {"track": 5}),
    ],
)
def test_tag_values_are_normalised(
    name: str, tags: dict[str, str], expected: dict[str, Any], fresh: Fresh
) -> None:
    assert read_audio_metadata(str(tag(fresh(name), tags)))["tags"] == expected


# --- cover art --------------------------------------------------------------------------


@pytest.mark.parametrize("name", KINDS)
def test_cover_becomes_thumbnails_never_upscaled(name: str, fresh: Fresh, tmp_path: Path) -> None:
    src = tag(fresh(name), TAGS, [(3, image_bytes())])
    made = thumbnails(src, tmp_path / "out")
    assert [(r.thumbnail.size, r.thumbnail.width, r.thumbnail.height) for r in made] == [
        (256, 256, 256),
        (1024, 600, 600),
    ]
    with Image.open(made[0].path) as thumb:
        assert thumb.format == "WEBP"
        assert thumb.convert("RGB").getpixel((128, 128)) == pytest.approx(RED, abs=8)
    # Nothing left behind but the thumbnails: the cover's temp file is gone.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1024.webp", "256.webp"]


@pytest.mark.parametrize("name", ["mp3", "flac", "opus", "wav"])
def test_front_cover_is_preferred(name: str, fresh: Fresh, tmp_path: Path) -> None:
    back, front = (4, image_bytes(BLUE, side=64)), (3, image_bytes(RED, side=64))
    made = thumbnails(tag(fresh(name), {}, [back, front]), tmp_path / "out")
    with Image.open(made[0].path) as thumb:
        assert thumb.convert("RGB").getpixel((32, 32)) == pytest.approx(RED, abs=8)


@pytest.mark.parametrize("name", KINDS)
def test_no_cover_is_its_own_error(name: str, fresh: Fresh, tmp_path: Path) -> None:
    with pytest.raises(NoCover, match=r"^no cover art$"):
        thumbnails(tag(fresh(name), TAGS), tmp_path / "out")


@pytest.mark.parametrize("name", KINDS)
def test_cover_over_the_byte_limit_is_refused_before_decoding(
    name: str, fresh: Fresh, tmp_path: Path
) -> None:
    cover = image_bytes()
    src = tag(fresh(name), {}, [(3, cover)])
    limit = len(cover) - 1
    with pytest.raises(AudioError, match=rf"cover art is too large: \d+ bytes.*{limit} bytes"):
        thumbnails(src, tmp_path / "out", max_cover_bytes=limit)
    assert not list((tmp_path / "out").iterdir())


def test_huge_id3_cover_is_refused_from_the_tag_header(fresh: Fresh, tmp_path: Path) -> None:
    src = tag(fresh("mp3"), {}, [(3, bytes(50 * 1024 * 1024))])
    try:
        started = time.monotonic()
        with pytest.raises(AudioError, match=r"too large: its ID3 tag is 52\d{6} bytes"):
            thumbnails(src, tmp_path / "out")
        assert time.monotonic() - started < 0.5  # mutagen never read the 50 MB tag
    finally:
        src.unlink()  # pytest keeps the last runs' tmp dirs: do not leave 50 MB there


@pytest.mark.parametrize(
    ("cover", "limits", "reason"),
    [
        # A refused image format or an image over the pixel cap is refused by images (an
        # ImageError) and reported as an AudioError: the task catches one family.
        (image_bytes(fmt="BMP"), {}, "format BMP is not accepted"),
        (image_bytes(), {"max_pixels": 100_000}, "360000 pixels exceeds the limit of 100000"),
        (b"<html>not a picture</html>", {}, "not an image in a known format"),
    ],
    ids=["bmp", "pixels", "junk"],
)
def test_unusable_cover_is_an_audio_error(
    cover: bytes, limits: dict[str, int], reason: str, fresh: Fresh, tmp_path: Path
) -> None:
    before = Image.MAX_IMAGE_PIXELS
    src = tag(fresh("flac"), {}, [(3, cover)])
    with pytest.raises(AudioError, match=f"cover art is unusable: .*{reason}") as caught:
        thumbnails(src, tmp_path / "out", **limits)
    assert isinstance(caught.value.__cause__, ImageError)
    assert before == Image.MAX_IMAGE_PIXELS  # the lowered cap was put back
    assert not list((tmp_path / "out").iterdir())


def test_corrupt_ogg_picture_block_is_an_audio_error(fresh: Fresh, tmp_path: Path) -> None:
    src = fresh("ogg")
    audio: Any = mutagen.File(src)
    audio.tags["metadata_block_picture"] = [base64.b64encode(b"\0\0\0\3 garbage").decode()]
    audio.save()
    with pytest.raises(AudioError, match="cover art is corrupt"):
        thumbnails(src, tmp_path / "out")


# --- hostile and broken files -------------------------------------------------------------


def _nested_mp4_atoms(_: Path) -> bytes:
    body = b""
    for _level in range(5000):  # 40 kB of boxes in boxes: deeper than Python's stack
        body = struct.pack(">I", 8 + len(body)) + b"moov" + body
    return struct.pack(">I", 16) + b"ftypM4A \0\0\0\0" + body


def _truncated_mp3(src: Path, keep: Callable[[int], int]) -> bytes:
    """A tagged MP3 with a cover, cut at ``keep(end of the ID3 tag)``."""
    data = tag(src, TAGS, [(3, image_bytes())]).read_bytes()
    tag_end = 10 + sum(b << (7 * (3 - i)) for i, b in enumerate(data[6:10]))  # 7-bit bytes
    return data[: keep(tag_end)]


# id: (the file's content, made from a copy of the untagged MP3; what the error says)
HOSTILE: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "empty": (lambda _: b"", "not audio in a known format"),
    "random": (lambda _: random.Random(7).randbytes(65536), "not audio in a known format"),
    "after-ID3": (lambda _: b"ID3" + random.Random(7).randbytes(4096), "truncated or corrupt"),
    "cut-in-tag": (lambda mp3: _truncated_mp3(mp3, lambda end: end // 2), "truncated or corrupt"),
    "cut-after-tag": (lambda mp3: _truncated_mp3(mp3, lambda end: end + 100), "can't sync"),
    "nested-mp4": (_nested_mp4_atoms, "truncated or corrupt: maximum recursion depth"),
    "jpeg": (lambda _: image_bytes(fmt="JPEG"), "not audio in a known format"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_file_is_an_audio_error_quickly(case: str, fresh: Fresh, tmp_path: Path) -> None:
    make, reason = HOSTILE[case]
    src = fresh("mp3")
    src.write_bytes(make(src))
    for call in (read_audio_metadata, lambda path: thumbnails(Path(path), tmp_path / "out")):
        started = time.monotonic()
        with pytest.raises(AudioError, match=reason) as caught:
            call(str(src))
        assert time.monotonic() - started < 1
        assert not isinstance(caught.value, NoCover)


def test_truncated_mp3_audio_still_reads_from_its_headers(fresh: Fresh) -> None:
    """mutagen reads headers, never the audio: cut mid-stream, an MP3 still gives the
    duration its LAME header states. The limitation is known and accepted."""
    src = fresh("mp3")
    src.write_bytes(src.read_bytes()[:4000])
    assert read_audio_metadata(str(src))["duration"] == pytest.approx(2.0, abs=0.1)


def test_missing_file_is_not_an_audio_error(tmp_path: Path) -> None:
    # A problem of the machine, not of the file: it propagates, so the task is retried.
    with pytest.raises(FileNotFoundError):
        read_audio_metadata(str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError):
        thumbnails(tmp_path / "gone", tmp_path / "out")
