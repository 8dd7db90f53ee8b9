"""The upload page at ``/``, driven in a real Chromium against a real server: uploads and
the gallery, the details dialog, the queue, errors and hostile names, the event stream, and
the page's own assets.

Screenshots go to ``test-artifacts/`` (``page.png``, ``page-phone.png`` and the details
dialog on both) for a person to look at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests import imagegen
from tests.browser_helpers import DESKTOP, WAIT_MS
from tests.conftest import ARTIFACTS, Server, ServerFactory
from tests.page_helpers import (
    PageErrors,
    card,
    drop_files,
    open_page,
    throttle_uploads,
    upload_rows,
    wait_thumbnail,
    wait_uploads_finished,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

pytestmark = pytest.mark.e2e

PHONE: ViewportSize = {"width": 375, "height": 812}


def text_of(locator: Any) -> str:
    """The text a person reads: no-break spaces (between numbers and units) as spaces."""
    text: str = locator.inner_text()
    return text.replace("\N{NO-BREAK SPACE}", " ")


def listing(server: Server) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = httpx.get(f"{server.url}/v1/files?limit=100").json()["files"]
    return files


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page, animations="disabled")


def assert_no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"the page is {width}px wide in a {viewport}px viewport"


def test_upload_gallery_details_delete(server: Server, browser: Browser, tmp_path: Path) -> None:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors = PageErrors(page)
    response = page.goto(server.url + "/")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp
    page.wait_for_selector("html[data-ready]")
    page.get_by_text("No files yet").wait_for()

    images = [
        imagegen.jpeg_photo(tmp_path, size=(1600, 1200)),
        imagegen.png_16bit(tmp_path),
        imagegen.palette_png_transparent(tmp_path),
    ]
    pdf = imagegen.pdf_file(tmp_path / "docs")
    page.set_input_files("#file-input", [str(p) for p in images])
    assert drop_files(page, "#dropzone", [pdf], "application/pdf"), "no highlight on drag-over"

    rows = wait_uploads_finished(page, 4)
    assert sorted(row["name"] for row in rows) == sorted(p.name for p in [*images, pdf])
    for row in rows:
        assert row["state"] in ("uploaded", "done"), row
        assert row["progress"] == 100, row
        assert row["status"].startswith("100 %"), row

    # Thumbnails replace the placeholders as the tasks finish; the PDF gets a file tile.
    for image in images:
        wait_thumbnail(page, image.name)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card')].every(c => c.dataset.status === 'ready')"
    )
    assert card(page, pdf.name).locator(".file-icon").inner_text() == "PDF"
    assert text_of(card(page, pdf.name).locator(".card-meta")).endswith("3 pages")
    assert text_of(card(page, "photo.jpg").locator(".card-meta")).endswith(
        "1600 \N{MULTIPLICATION SIGN} 1200"
    )
    painted = card(page, "photo.jpg").locator(".picture-placeholder")
    assert painted.evaluate("n => n.style.backgroundImage").startswith('url("data:image/png')
    page.wait_for_function(
        "() => [...document.querySelectorAll('.upload')].every(r => r.dataset.state === 'done')"
    )

    # Idle: nothing is processing, so the page stops polling the API.
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.wait_for_timeout(3500)
    assert not [url for url in requests if "/v1/files" in url], requests
    screenshot(page, "page.png")

    # Details: the photo's metadata, a larger preview; Esc closes and focus comes back.
    opener = card(page, "photo.jpg").locator("button")
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#details")
    dialog.wait_for(state="visible")
    text = text_of(dialog)
    for expected in [
        "photo.jpg",
        "image/jpeg",
        "1600 \N{MULTIPLICATION SIGN} 1200 px",
        "JPEG",
        "Canon EOS Test",
        "EF50mm f/1.8 STM",
        "1/250 s",
        "f/2.8",
        "400",
        "50 mm",
        "48.85840° N, 2.29450° E",
        "Ready",
    ]:
        assert expected in text, f"{expected!r} not in the details:\n{text}"
    preview = dialog.locator(".details-picture img")
    page.wait_for_function("img => img.naturalWidth >= 1024", arg=preview.element_handle())
    screenshot(page, "page-details.png", full_page=False)
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert opener.evaluate("node => node === document.activeElement")

    # Delete, after confirming: gone from the page and from the server.
    doomed = next(f for f in listing(server) if f["filename"] == "palette.png")
    card(page, "palette.png").locator("button").click()
    page.locator("#details-delete").click()
    confirm = page.locator("#delete-confirm")
    assert "palette.png" in confirm.inner_text() and "cannot be undone" in confirm.inner_text()
    assert page.locator("#cancel-delete").evaluate("node => node === document.activeElement")
    page.locator("#confirm-delete").click()
    dialog.wait_for(state="hidden")
    card(page, "palette.png").wait_for(state="detached")
    assert page.locator(".card").count() == 3
    assert doomed["id"] not in {f["id"] for f in listing(server)}
    assert httpx.get(f"{server.url}/v1/files/{doomed['id']}").status_code == 404

    errors.assert_none()
    context.close()

    # A phone: the queue and two columns of cards, nothing wider than the screen.
    phone = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    phone.set_default_timeout(WAIT_MS)
    page = phone.new_page()
    errors = PageErrors(page)
    open_page(page, server)
    shot = imagegen.jpeg_photo(tmp_path / "phone", size=(900, 1200), gps=False)
    portrait = shot.rename(shot.with_name("portrait.jpg"))
    page.set_input_files("#file-input", str(portrait))
    wait_uploads_finished(page, 1)
    page.wait_for_function("() => document.querySelector('.upload').dataset.state === 'done'")
    for name in ["portrait.jpg", "photo.jpg", "gray16.png"]:
        wait_thumbnail(page, name)
    assert_no_horizontal_scroll(page)
    columns = page.locator("#gallery-grid").evaluate(
        "grid => getComputedStyle(grid).gridTemplateColumns.split(' ').length"
    )
    assert columns == 2
    screenshot(page, "page-phone.png")
    card(page, "photo.jpg").locator("button").click()
    page.locator("#details .details-picture img").wait_for(state="visible")
    assert_no_horizontal_scroll(page)
    screenshot(page, "page-phone-details.png", full_page=False)
    errors.assert_none()
    phone.close()


def test_the_page_follows_the_event_stream_without_polling(
    server: Server, page: Page, tmp_path: Path
) -> None:
    """A file uploaded through the API, not the page, appears in the gallery, turns ready
    and goes away when deleted, with no request for the listing or a file record after the
    first load: the event stream says what changed."""
    errors = PageErrors(page)
    open_page(page, server)
    page.get_by_text("No files yet").wait_for()
    # The stream is open and the listing made when it opened is in.
    page.wait_for_selector("html[data-live]")
    records: list[str] = []
    record_path = re.compile(r"/v1/files(/[0-9a-f]{32})?")

    def watch(request: Any) -> None:
        if record_path.fullmatch(urlsplit(request.url).path):
            records.append(f"{request.method} {request.url}")

    page.on("request", watch)
    photo = imagegen.jpeg_photo(tmp_path, size=(800, 600))
    with httpx.Client(base_url=server.url, timeout=30) as api:
        uploaded = api.post("/v1/files", files={"file": (photo.name, photo.read_bytes())})
        assert uploaded.status_code == 201, uploaded.text
        file_id = uploaded.json()["files"][0]["id"]
        card(page, photo.name).wait_for()
        card(page, photo.name).and_(page.locator("[data-status=ready]")).wait_for()
        wait_thumbnail(page, photo.name)
        assert text_of(card(page, photo.name).locator(".card-meta")).endswith(
            "800 \N{MULTIPLICATION SIGN} 600"
        )
        assert api.delete(f"/v1/files/{file_id}").status_code == 204
    card(page, photo.name).wait_for(state="detached")
    page.get_by_text("No files yet").wait_for()
    assert records == [], "the page asked for files instead of following the stream"
    assert page.evaluate("document.documentElement.dataset.live") == "true"
    errors.assert_none()


def test_uploads_run_three_at_a_time_and_cancel(server: Server, page: Page, tmp_path: Path) -> None:
    errors = PageErrors(page)
    open_page(page, server)
    blobs = []
    for index in range(5):
        path = tmp_path / f"blob-{index}.bin"
        path.write_bytes(os.urandom(300_000))
        blobs.append(path)
    throttle_uploads(page, 150_000)
    page.set_input_files("#file-input", [str(p) for p in blobs])

    page.wait_for_function(
        "() => [...document.querySelectorAll('.upload progress')].some(p => p.value >= 5)"
    )
    rows = upload_rows(page)
    assert [row["state"] for row in rows] == ["uploading"] * 3 + ["queued"] * 2
    moving = next(row for row in rows if 0 < row["progress"] < 100)
    assert re.match(r"\d+ % · [\d.]+ KB of 300 KB", moving["status"]), moving
    assert re.search(r"5 files left · \d+ % done", page.locator("#queue-summary").inner_text())
    screenshot(page, "page-uploading.png")

    # Cancelling an upload aborts it and lets the next queued file start.
    page.get_by_role("button", name="Cancel upload of blob-1.bin").click()
    page.wait_for_function(
        "() => document.querySelectorAll('.upload[data-state=uploading]').length === 3"
    )
    states = [row["state"] for row in upload_rows(page)]
    assert states == ["uploading", "cancelled", "uploading", "uploading", "queued"]
    page.get_by_role("button", name="Cancel upload of blob-4.bin").click()

    throttle_uploads(page, None)
    page.wait_for_function(
        """() => [...document.querySelectorAll('.upload')]
            .every(r => ['done', 'cancelled'].includes(r.dataset.state))"""
    )
    rows = upload_rows(page)
    assert [row["state"] for row in rows] == ["done", "cancelled", "done", "done", "cancelled"]
    assert {f["filename"] for f in listing(server)} == {"blob-0.bin", "blob-2.bin", "blob-3.bin"}

    # A cancelled upload can be sent again.
    page.get_by_role("button", name="Retry upload of blob-1.bin").click()
    page.wait_for_function(
        "() => document.querySelector('.upload:nth-child(2)').dataset.state === 'done'"
    )
    assert "blob-1.bin" in {f["filename"] for f in listing(server)}
    errors.assert_none()


def test_server_errors_and_hostile_names_are_shown_as_text(
    server_factory: ServerFactory, page: Page, tmp_path: Path
) -> None:
    server = server_factory(max_file_size=100_000)
    errors = PageErrors(page, allowed=("status of 413",))
    page.add_init_script("window.alert = () => { window.injected = true; };")
    open_page(page, server)
    hostile = tmp_path / '<img src=x onerror="window.injected=true">.txt'
    hostile.write_text("hello")
    too_big = tmp_path / "<b>big.bin"
    too_big.write_bytes(os.urandom(300_000))
    broken = imagegen.truncated_jpeg(tmp_path)
    page.set_input_files("#file-input", [str(hostile), str(too_big), str(broken)])
    rows = {row["name"]: row for row in wait_uploads_finished(page, 3)}

    failed = rows[too_big.name]
    assert failed["state"] == "failed"
    assert "larger than the limit of 100000 bytes" in failed["status"], failed
    assert page.get_by_role("button", name=f"Retry upload of {too_big.name}").is_visible()
    assert rows[hostile.name]["state"] in ("uploaded", "done")
    card(page, hostile.name).wait_for()
    assert card(page, hostile.name).locator(".card-name").inner_text() == hostile.name
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("b", has_text="big").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.injected") is None

    # A file whose processing failed says so, with the task's reason, and can be retried.
    card(page, broken.name).and_(page.locator("[data-status=failed]")).wait_for()
    assert card(page, broken.name).locator(".badge").inner_text() == "Failed"
    row = page.locator(".upload", has=page.locator(".upload-name", has_text=broken.name))
    assert "processing failed" in row.locator(".upload-status").inner_text()
    card(page, broken.name).locator("button").click()
    tasks = page.locator("#details-tasks")
    assert "truncated" in tasks.inner_text()
    assert page.locator("#details-status").inner_text() == "Failed"
    with page.expect_response(lambda r: r.url.endswith("/retry")) as retried:
        page.get_by_role("button", name="Process again").click()
    assert retried.value.status == 200
    page.locator("#details-status", has_text="Failed").wait_for()
    assert page.locator("#details-error").is_hidden()
    page.keyboard.press("Escape")
    errors.assert_none()


def test_page_assets_are_served_with_the_page(server: Server) -> None:
    """No build step and no CDN: every script and style the page names is served here."""
    with httpx.Client(base_url=server.url) as http:
        page = http.get("/")
        assert page.headers["cache-control"] == "no-cache"
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        assert "/static/app.js" in assets and "/static/style.css" in assets
        assert "<style" not in page.text and not re.search(r"<script(?![^>]*\ssrc=)", page.text)
        modules = [
            *("api.js", "dom.js", "format.js", "uploads.js", "gallery.js", "details.js"),
            *("live.js", "resumable.js"),
        ]
        for asset in [*assets, *(f"/static/{m}" for m in modules), "/static/thumbhash.js"]:
            answer = http.get(asset)
            assert answer.status_code == 200, asset
            if asset.endswith(".js"):
                assert answer.headers["content-type"].startswith("text/javascript")
        assert http.get("/static/missing.js").status_code == 404
