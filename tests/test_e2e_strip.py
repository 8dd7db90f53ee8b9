"""End to end: with ``UPLOADS_STRIP_METADATA=location`` a photo's GPS never reaches
storage, its pixels, orientation and colour profile do, and the client's checksum and a
rerun's ``--skip-existing`` still match what it sent."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from PIL import ExifTags, Image, ImageCms

from tests import imagegen
from tests.conftest import Server, ServerFactory
from tests.helpers import sha256
from tests.service_fixtures import unavailable
from uploads_api.client import Client

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stripping(module_server_factory: ServerFactory) -> Server:
    return module_server_factory(strip_metadata="location")


def _tagged(tmp_path: Path, fmt: str) -> Path:
    """A photo with camera EXIF, GPS, orientation 6 and an sRGB profile, in ``fmt``."""
    with Image.open(imagegen.jpeg_photo(tmp_path / "src", size=(320, 240))) as opened:
        photo = opened.copy()
        exif = opened.getexif()
    exif[ExifTags.Base.Orientation] = 6
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / f"photo.{fmt.lower()}"
    options = {"quality": 90} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    photo.save(path, fmt, exif=exif.tobytes(), icc_profile=icc, **options)
    return path


def _decoded(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img


def _exiftool_gps(path: Path) -> list[str]:
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        unavailable("exiftool is not installed (Debian: libimage-exiftool-perl)")
        return []
    out = subprocess.run(
        [exiftool, "-j", "-G", "-a", "-n", str(path)], capture_output=True, check=True, text=True
    ).stdout
    (tags,) = json.loads(out)
    return sorted(name for name in tags if "GPS" in name)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_location_is_stripped_on_the_way_in(stripping: Server, tmp_path: Path, fmt: str) -> None:
    source = _tagged(tmp_path, fmt)
    sent = source.read_bytes()
    before = _decoded(source)
    assert before.getexif().get_ifd(ExifTags.IFD.GPSInfo), "the input has GPS"
    with httpx.Client(base_url=stripping.url, timeout=30) as client:
        record = client.put(f"/v1/files/{source.name}", content=sent).json()
        stored = client.get(f"/v1/files/{record['id']}/content").content
    assert record["received_sha256"] == sha256(sent)
    assert record["metadata"]["stripped"] == {"location": True, "all": False, "complete": True}
    assert (record["sha256"], record["size"]) == (sha256(stored), len(stored))
    assert record["sha256"] != record["received_sha256"]
    out = tmp_path / f"stored.{fmt.lower()}"
    out.write_bytes(stored)
    after = _decoded(out)
    assert after.getexif().get_ifd(ExifTags.IFD.GPSInfo) == {}
    assert _exiftool_gps(out) == []
    assert after.getexif()[ExifTags.Base.Orientation] == 6
    assert after.getexif()[ExifTags.Base.Make] == "Canon", "only the location goes"
    assert after.info.get("icc_profile") == before.info.get("icc_profile")
    assert after.tobytes() == before.tobytes(), "the pixels are untouched"


def test_client_checksums_and_reruns_match_the_bytes_sent(
    stripping: Server, tmp_path: Path
) -> None:
    source = _tagged(tmp_path, "JPEG")
    with Client(stripping.url) as client:
        record = client.upload(source, sha256=sha256(source.read_bytes()))
        assert record.checksum_verified
        assert record.sha256 is not None and record.received_sha256 is not None
        check = client.check([sha256(source.read_bytes()), record.sha256])
        assert sorted(check.present) == sorted([record.received_sha256, record.sha256])
        (found,) = list(client.list(sha256=record.received_sha256))
        assert found.id == record.id
    assert hashlib.sha256(source.read_bytes()).hexdigest() == record.received_sha256


def test_other_types_are_stored_as_sent(stripping: Server) -> None:
    data = io.BytesIO()
    Image.new("RGB", (8, 8)).save(data, "GIF")
    with httpx.Client(base_url=stripping.url, timeout=30) as client:
        record = client.put("/v1/files/a.gif", content=data.getvalue()).json()
    assert record["sha256"] == record["received_sha256"] == sha256(data.getvalue())
    assert "stripped" not in record["metadata"]
