"""The upload page at ``/``, driven in a real Chromium against a real server.

Screenshots go to ``test-artifacts/`` (``page.png``, ``page-phone.png`` and the details
dialog on both) for a person to look at.
"""

from __future__ import annotations

import base64
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
import thumbhash
from PIL import Image

from tests import imagegen
from tests.conftest import ARTIFACTS, Server, ServerFactory
from tests.page_helpers import (
    PageErrors,
    card,
    drop_files,
    launch,
    open_page,
    open_static,
    require_browser,
    throttle_uploads,
    upload_rows,
    wait_thumbnail,
    wait_uploads_finished,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize

pytestmark = pytest.mark.e2e

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 812}
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser()
    yield from launch()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


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


DECODE = """async hash => {
    const m = await import("/static/thumbhash.js");
    const bytes = m.base64ToBytes(hash);
    const { w, h, rgba } = m.thumbHashToRGBA(bytes);
    return { w, h, rgba: Array.from(rgba), ratio: m.thumbHashToApproximateAspectRatio(bytes) };
}"""


def decode_in_page(page: Page, raw: list[int]) -> tuple[Image.Image, float]:
    decoded = page.evaluate(DECODE, base64.b64encode(bytes(raw)).decode())
    size = (decoded["w"], decoded["h"])
    return Image.frombytes("RGBA", size, bytes(decoded["rgba"])), decoded["ratio"]


def halves(size: tuple[int, int]) -> Image.Image:
    """Red on the left, blue on the right."""
    img = Image.new("RGB", size, (220, 30, 30))
    img.paste((30, 40, 220), (size[0] // 2, 0, *size))
    return img


@pytest.mark.parametrize(
    ("source", "limit"),
    [
        (halves((96, 64)), 35),
        (halves((64, 64)), 35),
        (Image.linear_gradient("L").resize((48, 96)).convert("RGB"), 20),
    ],
    ids=["landscape", "square", "portrait"],
)
def test_thumbhash_decoder_paints_the_image(page: Page, source: Image.Image, limit: float) -> None:
    """web/thumbhash.js turns a hash made by the reference encoder back into a blurred
    copy of the image, in the image's proportions."""
    open_static(page)
    raw = list(thumbhash.rgba_to_thumb_hash(*source.size, list(source.convert("RGBA").tobytes())))
    decoded, ratio = decode_in_page(page, raw)
    assert ratio == pytest.approx(thumbhash.thumb_hash_to_approximate_aspect_ratio(raw))
    assert max(decoded.size) == 32
    assert decoded.width / decoded.height == pytest.approx(ratio, abs=0.05)
    extrema = decoded.getextrema()
    assert len(extrema) == 4  # one (min, max) per band
    assert extrema[3] == (255, 255), "opaque images decode opaque"
    reference = source.resize(decoded.size, Image.Resampling.BOX)
    pairs = zip(decoded.convert("RGB").tobytes(), reference.tobytes(), strict=True)
    diffs = [abs(a - b) for a, b in pairs]
    assert sum(diffs) / len(diffs) < limit


def test_thumbhash_decoder_keeps_average_colour_and_alpha(page: Page) -> None:
    """Every AC term sums to zero over the sampled grid, so the mean of the decoded pixels
    is the DC term: the average colour (and alpha) the reference reads from the header.
    Mid-grey DC terms and AC nibbles of 7 or 8 (about 0) keep every pixel clear of
    clamping, whose rounding would move the mean."""
    open_static(page)
    rng = random.Random(7)
    for alpha in (0, 1):
        for landscape in (0, 1):
            header24 = 32 | 35 << 6 | 27 << 12 | 4 << 18 | alpha << 23
            header16 = 4 | 5 << 3 | 6 << 9 | landscape << 15
            raw = [header24 & 255, header24 >> 8 & 255, header24 >> 16, header16 & 255]
            raw += [header16 >> 8] + ([9 | 3 << 4] if alpha else [])
            raw += [rng.choice((7, 8)) | rng.choice((7, 8)) << 4 for _ in range(30)]
            decoded, ratio = decode_in_page(page, raw)
            assert (decoded.width > decoded.height) == bool(landscape)
            assert decoded.width / decoded.height == pytest.approx(ratio, abs=0.05)
            expected = [255 * c for c in thumbhash.thumb_hash_to_average_rgba(raw)]
            pixels = decoded.width * decoded.height
            means = [sum(band.tobytes()) / pixels for band in decoded.split()]
            assert means == pytest.approx(expected, abs=1.5)
            if alpha:
                extrema = decoded.getextrema()
                assert len(extrema) == 4  # one (min, max) per band
                assert extrema[3][0] < extrema[3][1] < 255


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


def test_api_key_is_asked_once_and_sent_everywhere(
    server: Server, page: Page, tmp_path: Path
) -> None:
    """A server that wants a key: simulated in the browser, at the network edge, by
    answering 401 for any /v1 request without ``Bearer good-key``."""
    errors = PageErrors(page, allowed=("status of 401",))
    seen: list[tuple[str, str, str | None]] = []

    def gate(route: Any) -> None:
        request = route.request
        auth = request.headers.get("authorization")
        seen.append((request.method, request.url, auth))
        # An EventSource cannot send the header: the stream is opened with a token, which
        # the page got (from the real, open server) with the key.
        tokened = "/v1/events?" in request.url and "token=" in request.url
        if auth == "Bearer good-key" or tokened:
            route.continue_()
            return
        detail = "the API key is not valid" if auth else "this server needs an API key"
        route.fulfill(
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="uploads-api"'},
            content_type="application/problem+json",
            body=f'{{"status": 401, "code": "unauthorized", "detail": "{detail}"}}',
        )

    page.route(re.compile(r"/v1/"), gate)
    open_page(page, server)
    key_dialog = page.locator("#key-dialog")
    key_dialog.wait_for(state="visible")
    # Declining leaves the page usable and says why nothing shows, with a way back.
    page.keyboard.press("Escape")
    key_dialog.wait_for(state="hidden")
    page.locator("#banner", has_text="needs an API key").wait_for()
    assert page.locator("#gallery-status").is_hidden(), "no files is not known yet"
    page.get_by_role("button", name="Enter API key").click()
    key_dialog.wait_for(state="visible")
    assert page.locator("#key-input").evaluate("node => node === document.activeElement")
    page.fill("#key-input", "wrong-key")
    page.keyboard.press("Enter")
    page.locator("#key-error", has_text="the API key is not valid").wait_for()
    page.fill("#key-input", "good-key")
    page.get_by_role("button", name="Continue").click()
    key_dialog.wait_for(state="hidden")
    page.get_by_text("No files yet").wait_for()
    page.locator("#banner").wait_for(state="hidden")
    assert page.evaluate("sessionStorage.getItem('uploads-api.key')") == "good-key"
    assert page.locator("#forget-key").is_visible()

    photo = imagegen.jpeg_photo(tmp_path, size=(800, 600))
    page.set_input_files("#file-input", str(photo))
    wait_uploads_finished(page, 1)
    wait_thumbnail(page, "photo.jpg")
    src = card(page, "photo.jpg").locator("img").get_attribute("src") or ""
    assert src.startswith("blob:"), "with a key, thumbnails are fetched with the header"

    card(page, "photo.jpg").locator("button").click()
    with page.expect_download() as download_info:
        page.locator("#details-download").click()
    download = download_info.value
    assert download.suggested_filename == "photo.jpg"
    assert Path(download.path()).read_bytes() == photo.read_bytes()
    page.keyboard.press("Escape")

    after_key = seen[seen.index(next(s for s in seen if s[2] == "Bearer good-key")) :]
    assert any(m == "PUT" for m, _, _ in after_key), "the upload went through the gate"
    assert any("/thumbnails/" in url for _, url, _ in after_key)
    assert any(url.endswith("/content") for _, url, _ in after_key)
    assert any(url.endswith("/v1/events/tokens") for _, url, _ in after_key)
    streams = [(auth, url) for _, url, auth in after_key if "/v1/events?" in url]
    assert streams and all(auth is None and "token=" in url for auth, url in streams), streams
    with_header = [s for s in after_key if "/v1/events?" not in s[1]]
    assert all(auth == "Bearer good-key" for _, _, auth in with_header), after_key
    assert key_dialog.is_hidden(), "asked for the key again"
    errors.assert_none()


def create_key(server: Server) -> str:
    """A real key, made with the CLI in the server's data dir; waits until it is enforced."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOADS_")}
    command = [sys.executable, "-m", "uploads_api.cli", "keys", "create", "page-test"]
    command += ["--data-dir", str(server.data_dir)]
    made = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    deadline = time.monotonic() + 15
    while httpx.get(f"{server.url}/v1/files").status_code != 401:
        assert time.monotonic() < deadline, "the server never started asking for the key"
        time.sleep(0.25)
    return made.stdout.strip()


def test_real_api_key_round_trip(server: Server, page: Page, tmp_path: Path) -> None:
    """The server's own 401: the page asks, then lists, uploads, shows and downloads."""
    key = create_key(server)
    errors = PageErrors(page, allowed=("status of 401",))
    open_page(page, server)
    page.locator("#key-dialog").wait_for(state="visible")
    page.fill("#key-input", key)
    page.get_by_role("button", name="Continue").click()
    page.get_by_text("No files yet").wait_for()

    photo = imagegen.jpeg_photo(tmp_path, size=(640, 480))
    page.set_input_files("#file-input", str(photo))
    wait_uploads_finished(page, 1)
    wait_thumbnail(page, "photo.jpg")
    card(page, "photo.jpg").locator("button").click()
    page.locator("#details .details-picture img").wait_for(state="visible")
    with page.expect_download() as download_info:
        page.locator("#details-download").click()
    assert Path(download_info.value.path()).read_bytes() == photo.read_bytes()
    files = httpx.get(f"{server.url}/v1/files", headers={"Authorization": f"Bearer {key}"})
    assert [f["filename"] for f in files.json()["files"]] == ["photo.jpg"]
    errors.assert_none()


def test_the_stream_comes_back_with_a_new_token_and_misses_nothing(
    server: Server, page: Page, tmp_path: Path
) -> None:
    """With keys on, the page opens the stream with a token. When its server goes away, the
    page asks for a new token once the server is back and resumes after the last event it
    saw: a file uploaded (through another server on the same data) meanwhile shows up,
    with no listing asked for."""
    key = create_key(server)
    other = Server(server.data_dir, server.env, tmp_path / "other.log")
    other.start()
    try:
        errors = PageErrors(page, allowed=("status of 401", "ERR_CONNECTION_REFUSED"))
        open_page(page, server)
        page.locator("#key-dialog").wait_for(state="visible")
        page.fill("#key-input", key)
        page.get_by_role("button", name="Continue").click()
        page.wait_for_selector("html[data-live]")
        requests: list[str] = []
        page.on("request", lambda request: requests.append(urlsplit(request.url).path))

        with httpx.Client(base_url=other.url, headers={"Authorization": f"Bearer {key}"}) as api:

            def upload_text(name: str) -> None:
                sent = api.post("/v1/files", files={"file": (name, b"hello " + name.encode())})
                assert sent.status_code == 201, sent.text

            upload_text("before.txt")
            card(page, "before.txt").wait_for()
            server.stop()
            page.wait_for_selector("html:not([data-live])")
            upload_text("meanwhile.txt")
            server.start()
            page.wait_for_selector("html[data-live]")
            card(page, "meanwhile.txt").wait_for()
        assert requests.count("/v1/events/tokens") >= 1, requests
        assert "/v1/files" not in requests, "resumed: no listing needed"
        errors.assert_none()
    finally:
        other.stop()


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
