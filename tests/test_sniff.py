"""uploads_api.sniff on generated files and hand-made edge cases."""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import puremagic
import pytest
from puremagic import main as puremagic_db

from tests import imagegen
from uploads_api.magic_index import MagicIndex
from uploads_api.sniff import HEAD_SIZE, kind_for, sniff_content_type


def head_of(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(HEAD_SIZE)


@pytest.mark.parametrize(
    ("make", "expected", "kind"),
    [
        (imagegen.jpeg_photo, "image/jpeg", "image"),
        (imagegen.cmyk_jpeg, "image/jpeg", "image"),
        (imagegen.truncated_jpeg, "image/jpeg", "image"),
        (imagegen.png_16bit, "image/png", "image"),
        (imagegen.palette_png_transparent, "image/png", "image"),
        (imagegen.rgba_png, "image/png", "image"),
        (imagegen.decompression_bomb_png, "image/png", "image"),
        (imagegen.animated_gif, "image/gif", "image"),
        (imagegen.webp_image, "image/webp", "image"),
        (imagegen.heic_image, "image/heic", "image"),
        (imagegen.avif_image, "image/avif", "image"),
        (imagegen.tiff_image, "image/tiff", "image"),
        (imagegen.bmp_image, "image/bmp", "image"),
        (imagegen.pdf_file, "application/pdf", "pdf"),
        (imagegen.not_an_image, "text/plain", "other"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_generated_files(
    tmp_path: Path, make: Callable[[Path], Path], expected: str, kind: str
) -> None:
    if make is imagegen.jpeg_photo:
        path = imagegen.jpeg_photo(tmp_path, size=(64, 48))
    elif make is imagegen.decompression_bomb_png:
        path = imagegen.decompression_bomb_png(tmp_path, size=(2000, 2000))
    else:
        path = make(tmp_path)
    content_type = sniff_content_type(head_of(path))
    assert content_type == expected
    assert kind_for(content_type) == kind


SVG_NS = b'xmlns="http://www.w3.org/2000/svg"'


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"", "application/x-empty"),
        # SVG, with or without prolog, doctype, comments, BOM; script inside changes nothing.
        (b"<svg " + SVG_NS + b"><script>alert(1)</script></svg>", "image/svg+xml"),
        (b"  \n<SVG " + SVG_NS + b"/>", "image/svg+xml"),
        (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- Generator: Illustrator -->\n'
            b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
            b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg ' + SVG_NS + b">",
            "image/svg+xml",
        ),
        (b"\xef\xbb\xbf<?xml version='1.0'?><svg:svg xmlns:svg='x'/>", "image/svg+xml"),
        # HTML, also when it carries inline SVG or comes as XHTML.
        (b"<!DOCTYPE html><html><body><svg></svg></body></html>", "text/html"),
        (b"\r\n  <HTML><head><title>x</title>", "text/html"),
        (b"<script>fetch('/steal')</script>", "text/html"),
        (b"<body onload=alert(1)>", "text/html"),
        (
            b'<?xml version="1.0"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0//EN"><html>',
            "text/html",
        ),
        (b"<?xml version='1.0'?><html xmlns='http://www.w3.org/1999/xhtml'>", "text/html"),
        # Text.
        (b"<?php echo 'hello'; ?>", "text/plain"),
        (b"<?php\necho 'hi';\n", "text/plain"),
        (b"Hello, world.\nSecond line.\n", "text/plain"),
        (b'{"svg": "<svg>"}', "text/plain"),
        ("Grüße, 世界".encode() + "é".encode()[:1], "text/plain"),  # cut inside a character
        (b"BMW owners club: meeting notes\n", "text/plain"),
        (b"<?xml version='1.0'?><rss><channel/></rss>", "text/plain"),
        # Binary.
        (b"Hello\x00world", "application/octet-stream"),
        (b"\xff\xfeH\x00i\x00", "application/octet-stream"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x14ftypjp2 ", "image/jp2"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "video/mp4"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf", "image/avif"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1miaf", "image/heif"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
    ],
)
def test_edge_cases(head: bytes, expected: str) -> None:
    assert sniff_content_type(head) == expected


def zipped(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            # ODF wants "mimetype" first and stored: that is what makes it recognisable.
            archive.writestr(
                name, "application/vnd.oasis.opendocument.text" if name == "mimetype" else "x"
            )
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (zipped("a.txt", "b.txt"), "application/zip"),
        (
            zipped("[Content_Types].xml", "_rels/.rels", "word/document.xml"),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            zipped("[Content_Types].xml", "_rels/.rels", "xl/workbook.xml"),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        (zipped("mimetype", "content.xml"), "application/vnd.oasis.opendocument.text"),
        (gzip.compress(b"hello" * 100, mtime=0), "application/x-gzip"),
    ],
    ids=["zip", "docx", "xlsx", "odt", "gzip"],
)
def test_archives(data: bytes, expected: str) -> None:
    assert sniff_content_type(data[:HEAD_SIZE]) == expected
    assert kind_for(expected) == "other"


def _ogg(packet: bytes) -> bytes:
    """An Ogg page header with one segment, then the stream's first packet."""
    return b"OggS\x00\x02" + bytes(20) + b"\x01" + bytes([len(packet)]) + packet


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", "video/quicktime"),
        (b"\x00\x00\x00\x1cftypM4A \x00\x00\x02\x00M4A isom", "audio/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", "video/x-msvideo"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x23TSSE", "audio/mpeg"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (_ogg(b"\x01vorbis\x00\x00\x00\x00"), "audio/ogg"),
        (_ogg(b"OpusHead\x01\x02"), "audio/ogg"),
        (_ogg(b"\x80theora\x03\x02"), "video/ogg"),
        (_ogg(b"something"), "application/ogg"),
        (b"\x00\x00\x00\x1cftypmp42\x00\x00\x00\x00M4A mp42isom", "audio/mp4"),
        (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom", "application/octet-stream"),
        (b"ID3 tags hold an mp3's title, and this line is only text about them.\n", "text/plain"),
    ],
    ids=[
        "mp4",
        "mov",
        "m4a",
        "webm",
        "mkv",
        "avi",
        "wav",
        "mp3",
        "flac",
        "vorbis",
        "opus",
        "theora",
        "ogg",
        "m4a-mp42",
        "cr3",
        "id3-text",
    ],
)
def test_audio_and_video_containers(head: bytes, expected: str) -> None:
    assert sniff_content_type(head) == expected


def test_only_the_head_counts() -> None:
    text = b"a" * HEAD_SIZE
    assert sniff_content_type(text + b"\x00binary tail") == "text/plain"


@pytest.mark.parametrize("seed", range(50))
def test_random_bytes_never_raise_and_are_stable(seed: int) -> None:
    rng = random.Random(seed)
    head = rng.randbytes(rng.choice([1, 2, 3, 17, 512, HEAD_SIZE]))
    first = sniff_content_type(head)
    assert first == sniff_content_type(head)
    assert "/" in first


def test_random_bytes_are_unknown() -> None:
    head = random.Random(1234).randbytes(HEAD_SIZE)
    assert sniff_content_type(head) == "application/octet-stream"


def _kept(head: bytes) -> bool:
    """Whether puremagic itself finds a row in ``head`` that the sniffer would keep."""
    try:
        matches = puremagic.magic_string(head)
    except puremagic.PureError:
        return False
    return any(m.mime_type and m.offset >= 0 and len(m.byte_match) >= 3 for m in matches)


def _heads_with_every_signature() -> list[bytes]:
    """Random heads, each with one row of puremagic's database put where it looks for it."""
    rng = random.Random(7)
    rows = [*puremagic_db.magic_header_array, *puremagic_db.magic_footer_array]
    rows += [row for options in puremagic_db.multi_part_dict.values() for row in options]
    heads = []
    for row in rows:
        head = bytearray(rng.randbytes(HEAD_SIZE))
        start = row.offset if row.offset >= 0 else HEAD_SIZE + row.offset
        head[start : start + len(row.byte_match)] = row.byte_match
        heads.append(bytes(head[:HEAD_SIZE]))
    # Multi-part rows after the signature that leads to them.
    for base, options in puremagic_db.multi_part_dict.items():
        for row in options:
            if row.offset >= 0:
                head = bytearray(rng.randbytes(HEAD_SIZE))
                head[: len(base)] = base
                head[row.offset : row.offset + len(row.byte_match)] = row.byte_match
                heads.append(bytes(head[:HEAD_SIZE]))
    return heads


def test_the_magic_index_never_skips_what_puremagic_would_answer() -> None:
    """The index says "no match" only where puremagic finds nothing the sniffer keeps, so
    skipping puremagic there changes no answer."""
    index = MagicIndex(min_length=3)
    rng = random.Random(99)
    heads = _heads_with_every_signature()
    heads += [rng.randbytes(rng.choice([1, 5, 100, HEAD_SIZE])) for _ in range(3000)]
    skipped = 0
    for head in heads:
        if not index.could_match(head):
            skipped += 1
            assert not _kept(head), head[:40]
    assert skipped > 2500  # and most random heads skip it


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("image/jpeg", "image"),
        ("image/svg+xml", "image"),
        ("application/pdf", "pdf"),
        ("video/mp4", "video"),
        ("audio/mpeg", "audio"),
        ("text/plain", "other"),
        ("application/octet-stream", "other"),
    ],
)
def test_kind_for(content_type: str, kind: str) -> None:
    assert kind_for(content_type) == kind
