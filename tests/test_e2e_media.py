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
from tests.helpers import assert_healthy, task_of, upload, wait_done

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


# Hostile files: each fails its own task with a reason, and the server goes on -----------


def _truncated_mp4(tmp_path: Path) -> Path:
    clip = mediagen.video(tmp_path / "whole")
    data = clip.read_bytes()
    # PyAV writes the moov atom (the index) last: cut before it, the frames have no map.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.rindex(b"moov") - 4])
    return cut


def _mp3_with_huge_cover(tmp_path: Path) -> Path:
    from mutagen import id3 as mutagen_id3

    path = mediagen.mp3(tmp_path, cover=False)
    id3: Any = mutagen_id3  # mutagen has no type hints
    tags = id3.ID3(str(path))
    jpeg = b"\xff\xd8\xff\xe0" + bytes(50 * 1024 * 1024)
    tags.add(id3.APIC(encoding=3, mime="image/jpeg", type=3, desc="big", data=jpeg))
    tags.save(str(path))
    return path


def test_a_truncated_video_fails_with_a_reason(shared_server: Server, tmp_path: Path) -> None:
    with httpx.Client(base_url=shared_server.url, timeout=60) as client:
        (record,) = upload(client, _truncated_mp4(tmp_path))
        record = wait_done(client, record["id"], timeout=60)
    assert record["status"] == "failed"
    for name in ("metadata", "thumbnails"):
        task = task_of(record, name)
        assert (task["state"], task["attempts"]) == ("failed", 1), task
        assert "video" in task["error"] and "Traceback" not in task["error"]
    assert_healthy(shared_server)


def test_an_mp3_with_a_50_mb_cover_fails_its_thumbnails_only(
    shared_server: Server, tmp_path: Path
) -> None:
    with httpx.Client(base_url=shared_server.url, timeout=60) as client:
        (record,) = upload(client, _mp3_with_huge_cover(tmp_path))
        record = wait_done(client, record["id"], timeout=60)
    thumbnails = task_of(record, "thumbnails")
    assert thumbnails["state"] == "failed" and "cover" in thumbnails["error"], thumbnails
    assert task_of(record, "metadata")["state"] in ("succeeded", "failed")
    assert_healthy(shared_server)


def test_a_100000_pt_pdf_page_renders_within_the_pixel_cap(
    client: httpx.Client, tmp_path: Path
) -> None:
    record = ready(client, mediagen.pdf(tmp_path, pages=1, size=(100_000, 100_000)))
    assert record["metadata"]["pdf"]["page_size"] == [100_000, 100_000]
    sizes = {t["size"]: (t["width"], t["height"]) for t in record["thumbnails"]}
    assert sizes == {256: (256, 256), 1024: (1024, 1024)}
