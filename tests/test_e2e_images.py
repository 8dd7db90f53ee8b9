"""End to end: the pipeline on real images, on one server shared by the module (each test
looks only at its own files)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests import imagegen
from tests.helpers import task_of, upload, wait_done

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(shared_client: httpx.Client) -> Iterator[httpx.Client]:
    yield shared_client


@pytest.mark.parametrize("orientation", range(1, 9))
def test_thumbnails_follow_exif_orientation(
    client: httpx.Client, tmp_path: Path, orientation: int
) -> None:
    source = imagegen.jpeg_with_orientation(tmp_path, orientation, size=(640, 320))
    (record,) = upload(client, source)
    record = wait_done(client, record["id"])
    assert record["status"] == "ready", record
    thumbs = {t["size"]: t for t in record["thumbnails"]}
    assert set(thumbs) == {256, 1024}
    # Displayed 640x320: the 256 thumbnail is 256x128, the 1024 one is never upscaled.
    assert (thumbs[256]["width"], thumbs[256]["height"]) == (256, 128)
    assert (thumbs[1024]["width"], thumbs[1024]["height"]) == (640, 320)
    image = Image.open(io.BytesIO(client.get(thumbs[256]["url"]).content))
    assert image.format == "WEBP"
    assert image.size == (256, 128)
    assert not image.getexif()
    pixel = image.convert("RGB").getpixel((10, 10))
    assert isinstance(pixel, tuple)
    red, _green, blue = pixel
    assert red > 200 and blue < 60, "the marker is top-left after orientation"
    image_meta = record["metadata"]["image"]
    assert (image_meta["width"], image_meta["height"]) == (640, 320)
    assert image_meta["orientation"] == orientation


def test_metadata_of_a_photo(client: httpx.Client, tmp_path: Path) -> None:
    photo = imagegen.jpeg_photo(tmp_path, size=(1200, 900))
    (record,) = upload(client, photo)
    record = wait_done(client, record["id"])
    meta = record["metadata"]
    assert meta["kind"] == "image"
    assert meta["mime_type"] == "image/jpeg"
    assert meta["size"] == photo.stat().st_size
    assert meta["sha256"] == record["sha256"]
    image = meta["image"]
    assert (image["format"], image["width"], image["height"]) == ("JPEG", 1200, 900)
    assert image["mode"] == "RGB" and image["frames"] == 1 and image["has_alpha"] is False
    exif = image["exif"]
    assert exif["make"] == "Canon" and exif["model"] == "EOS Test"
    assert exif["iso"] > 0 and exif["f_number"] > 0 and exif["focal_length"] > 0
    assert exif["datetime_original"]
    assert exif["gps"]["latitude"] == pytest.approx(48.8584, abs=1e-3)
    assert exif["gps"]["longitude"] == pytest.approx(2.2945, abs=1e-3)
    assert len(base64.b64decode(meta["thumbhash"])) > 5, "the page's placeholder"


@pytest.mark.parametrize(
    ("maker", "mode_check"),
    [
        (imagegen.cmyk_jpeg, "RGB"),
        (imagegen.png_16bit, "L"),
        (imagegen.palette_png_transparent, "RGBA"),
        (imagegen.animated_gif, None),
        (imagegen.heic_image, None),
        (imagegen.avif_image, None),
        (imagegen.tiff_image, None),
        (imagegen.rgba_png, "RGBA"),
    ],
)
def test_unusual_images_get_thumbnails(
    client: httpx.Client, tmp_path: Path, maker: Callable[[Path], Path], mode_check: str | None
) -> None:
    source = maker(tmp_path)
    (record,) = upload(client, source)
    record = wait_done(client, record["id"])
    assert record["status"] == "ready", record
    assert len(record["thumbnails"]) == 2
    thumb = Image.open(io.BytesIO(client.get(record["thumbnails"][0]["url"]).content))
    if mode_check == "RGBA":
        assert thumb.mode == "RGBA"
        extrema = thumb.getextrema()
        assert len(extrema) == 4  # one (min, max) per band
        assert extrema[3][0] < 255, "transparency survives"


def test_pdf_and_text_metadata_and_thumbnails(client: httpx.Client, tmp_path: Path) -> None:
    pdf = imagegen.pdf_file(tmp_path, pages=3)
    text = imagegen.not_an_image(tmp_path)
    pdf_record, text_record = upload(client, pdf, text)
    pdf_record = wait_done(client, pdf_record["id"])
    text_record = wait_done(client, text_record["id"])
    assert pdf_record["metadata"]["kind"] == "pdf"
    assert pdf_record["metadata"]["pdf"]["pages"] == 3
    # The first page, rendered.
    assert task_of(pdf_record, "thumbnails")["state"] == "succeeded"
    assert sorted(t["size"] for t in pdf_record["thumbnails"]) == [256, 1024]
    assert text_record["metadata"]["kind"] == "other"
    assert task_of(text_record, "thumbnails")["state"] == "skipped"
    assert text_record["status"] == "ready"


@pytest.mark.parametrize("maker", [imagegen.truncated_jpeg, imagegen.decompression_bomb_png])
def test_broken_images_fail_at_once_with_a_readable_error(
    client: httpx.Client, tmp_path: Path, maker: Callable[[Path], Path]
) -> None:
    (record,) = upload(client, maker(tmp_path))
    record = wait_done(client, record["id"])
    assert record["status"] == "failed"
    thumbs = task_of(record, "thumbnails")
    assert thumbs["state"] == "failed"
    assert thumbs["attempts"] == 1, "a permanent failure is not retried"
    assert thumbs["error"]
    assert record["thumbnails"] == []
    assert record["metadata"]["sha256"] == record["sha256"], "basic metadata is kept"
    failed = client.get("/v1/tasks", params={"state": "failed"}).json()["tasks"]
    assert any(t["file_id"] == record["id"] and t["name"] == "thumbnails" for t in failed)
