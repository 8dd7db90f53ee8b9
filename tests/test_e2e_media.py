"""End to end: video, audio and PDF through the real server, each decoded in the pool:
their facts under ``metadata.<kind>``, and previews (a frame, the cover art, the first
page) as thumbnails with a ThumbHash placeholder."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests import mediagen
from tests.conftest import Server, ServerFactory
from tests.helpers import task_of, upload, wait_done

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(shared_client: httpx.Client) -> Iterator[httpx.Client]:
    yield shared_client


def ready(client: httpx.Client, path: Path) -> dict[str, Any]:
    (record,) = upload(client, path)
    record = wait_done(client, record["id"], timeout=60)
    assert record["status"] == "ready", record
    return record


def thumbnail(client: httpx.Client, record: dict[str, Any], size: int) -> Image.Image:
    (thumb,) = [t for t in record["thumbnails"] if t["size"] == size]
    response = client.get(thumb["url"])
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (thumb["width"], thumb["height"])
    return image


def test_a_video_gets_its_facts_and_a_poster(client: httpx.Client, tmp_path: Path) -> None:
    record = ready(client, mediagen.video(tmp_path, size=(320, 240), seconds=2.0))
    meta = record["metadata"]
    assert (meta["kind"], meta["mime_type"]) == ("video", "video/mp4")
    video = meta["video"]
    assert video["duration"] == pytest.approx(2.0, abs=0.15)
    assert (video["width"], video["height"], video["rotation"]) == (320, 240, 0)
    assert (video["fps"], video["codec"], video["has_audio"]) == (25, "h264", True)
    assert {t["size"]: (t["width"], t["height"]) for t in record["thumbnails"]} == {
        256: (256, 192),
        1024: (320, 240),  # never upscaled
    }
    # Frame i is grey level i * 255 / 49: the poster is from about 10 % in.
    grey = thumbnail(client, record, 256).convert("L").getpixel((128, 96))
    assert isinstance(grey, int) and 10 <= grey <= 45, grey
    assert meta["thumbhash"]


def test_audio_gets_its_tags_and_its_cover_as_thumbnails(
    client: httpx.Client, tmp_path: Path
) -> None:
    record = ready(client, mediagen.mp3(tmp_path))
    meta = record["metadata"]
    assert (meta["kind"], meta["mime_type"]) == ("audio", "audio/mpeg")
    audio = meta["audio"]
    assert audio["duration"] == pytest.approx(2.0, abs=0.2)
    assert (audio["sample_rate"], audio["channels"]) == (44100, 2)
    assert audio["tags"] == {
        "title": "Test Song",
        "artist": "Test Artist",
        "album": "Test Album",
        "track": 3,
    }
    sizes = {t["size"]: (t["width"], t["height"]) for t in record["thumbnails"]}
    assert sizes == {256: (256, 256), 1024: (600, 600)}
    pixel = thumbnail(client, record, 256).convert("RGB").getpixel((128, 128))
    assert isinstance(pixel, tuple)
    red, green, _blue = pixel
    assert red > 150 and green < 80, "the cover art"


def test_audio_without_a_cover_skips_its_thumbnails_with_the_reason(
    client: httpx.Client, tmp_path: Path
) -> None:
    record = ready(client, mediagen.mp3(tmp_path, cover=False))
    thumbnails = task_of(record, "thumbnails")
    assert thumbnails["state"] == "skipped"
    assert "cover" in thumbnails["error"]
    assert record["thumbnails"] == []
    assert record["metadata"]["audio"]["tags"]["title"] == "Test Song"


def test_a_pdf_gets_its_facts_and_its_first_page(client: httpx.Client, tmp_path: Path) -> None:
    record = ready(client, mediagen.pdf(tmp_path, pages=4, size=(595, 842)))
    pdf = record["metadata"]["pdf"]
    assert {k: pdf[k] for k in ("pages", "title", "author", "page_size", "encrypted")} == {
        "pages": 4,
        "title": "Test Document",
        "author": "Test Author",
        "page_size": [595, 842],
        "encrypted": False,
    }
    (big,) = [t for t in record["thumbnails"] if t["size"] == 1024]
    assert big["height"] == 1024 and big["width"] == pytest.approx(724, abs=2)


@pytest.fixture(scope="module")
def mp4_only(module_server_factory: ServerFactory) -> Server:
    return module_server_factory(video_formats="mp4")


def test_a_container_off_the_allowlist_is_stored_but_never_opened(
    mp4_only: Server, tmp_path: Path
) -> None:
    webm = mediagen.video(tmp_path, "clip.webm", codec="libvpx", audio=False)
    with httpx.Client(base_url=mp4_only.url, timeout=30) as client:
        (record,) = upload(client, webm)
        assert record["status"] == "ready", "nothing to do, settled at upload"
        assert record["content_type"] == "video/webm"
        assert task_of(record, "thumbnails")["state"] == "skipped"
        assert client.get(f"/v1/files/{record['id']}/content").content == webm.read_bytes()
