"""The upload page with a server that wants an API key, in a real Chromium: the page asks
for the key once and sends it on every request, and opens the event stream with a token,
a new one when the stream comes back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests import imagegen
from tests.conftest import Server
from tests.page_helpers import PageErrors, card, open_page, wait_thumbnail, wait_uploads_finished

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e


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
