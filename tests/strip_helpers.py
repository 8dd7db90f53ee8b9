"""Helpers for the strip suites: images that carry camera EXIF with GPS, XMP, comments and
an ICC profile, a stripper run over the bytes split in several ways, and what exiftool
reads in a file."""

from __future__ import annotations

import io
import json
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from tests import imagegen
from uploads_api.ingest.chunk_walker import Piece
from uploads_api.ingest.strip import Stripper, stripper_for

ORIENTATION = ExifTags.Base.Orientation
GPS = ExifTags.IFD.GPSInfo
FORMATS = ["JPEG", "PNG", "WEBP"]
MODES = ["location", "all"]
SPLITS = ["whole", "bytes", "random"]
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
SIGNATURES = {
    "JPEG": b"\xff\xd8",
    "PNG": b"\x89PNG\r\n\x1a\n",
    "WEBP": b"RIFF\x00\x10\x00\x00WEBP",
}
XMP_WITH_GPS = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.5N" '
    b'exif:GPSLongitude="2,17.67E"/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@dataclass(frozen=True)
class Source:
    fmt: str
    data: bytes
    pixels: bytes

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.fmt]


def _exif(tmp: Path, endian: str = "<") -> Image.Exif:
    """Camera EXIF with GPS (as tests/imagegen makes it), orientation 6, and an XMP packet
    with GPS inside IFD0, where TIFF keeps XMP and exiftool looks for it."""
    with Image.open(imagegen.jpeg_photo(tmp, size=(16, 16))) as photo:
        exif = photo.getexif()
    exif.endian = endian
    exif[ORIENTATION] = 6
    exif[ExifTags.Base.XMLPacket] = XMP_WITH_GPS
    return exif


def _encode(fmt: str, exif: Image.Exif | None, size: tuple[int, int] = (128, 96)) -> Source:
    # Noise, as in a photo: image data outweighs the metadata, as it does in real files.
    noise = Image.effect_noise(size, 24).convert("RGB")
    img = Image.blend(imagegen.gradient(size), noise, 0.25)
    options: dict[str, Any] = {"icc_profile": ICC}
    if exif is not None:
        options["exif"] = exif
    if fmt == "JPEG":
        options |= {"quality": 90, "xmp": XMP_WITH_GPS, "comment": b"taken at home"}
    elif fmt == "PNG":
        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP_WITH_GPS.decode())
        info.add_text("Comment", "taken at home")
        info.add_text("Raw profile type exif", "exif\n      4\n45786966")
        options["pnginfo"] = info
    else:
        options |= {"quality": 90, "xmp": XMP_WITH_GPS}
    out = io.BytesIO()
    img.save(out, fmt, **options)
    data = out.getvalue()
    return Source(fmt, data, Image.open(io.BytesIO(data)).tobytes())


def _pieces(data: bytes, split: str, seed: int = 0) -> Iterator[Piece]:
    view = memoryview(data)
    if split == "whole":
        yield data
    elif split == "bytes":
        yield from (data[i : i + 1] for i in range(len(data)))
    else:
        rng, pos = random.Random(seed), 0
        while pos < len(data):
            step = rng.choice((1, 2, 3, 7, 64, 500, 4096))
            yield view[pos : pos + step]
            pos += step


def _run(stripper: Stripper, pieces: Iterator[Piece]) -> bytes:
    out: list[Piece] = []
    for piece in pieces:
        out += stripper.feed(piece)
    out += stripper.finish()
    assert all(isinstance(p, bytes | memoryview) for p in out)
    return b"".join(out)


def _strip(
    data: bytes, fmt: str, mode: str, split: str = "whole", seed: int = 0, **kw: int
) -> tuple[bytes, Stripper]:
    stripper = stripper_for(CONTENT_TYPES[fmt], mode, **kw)
    assert stripper is not None
    return _run(stripper, _pieces(data, split, seed)), stripper


def _tags(exiftool: str, data: bytes, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "image"
    path.write_bytes(data)
    run = subprocess.run(
        # -ee: embedded images too, such as the frames of an MPO.
        [exiftool, "-j", "-G", "-a", "-n", "-ee", str(path)],
        capture_output=True,
        check=True,
        text=True,
    )
    (tags,) = json.loads(run.stdout)
    assert isinstance(tags, dict)
    return tags


def _located(tags: dict[str, Any]) -> list[str]:
    return [name for name in tags if "GPS" in name]
