"""The page sends files larger than 8 MiB resumably, over tus with the vendored
tus-js-client, in Debian's Chromium against a real server: with the key on every request,
paused and resumed, and resumed after a reload when the same file is chosen again, from
the offset the server acknowledged, into the same upload."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ROOT, Server, ServerFactory
from tests.helpers import bearer, create_key, resumable_audit, wait_closed, wait_for
from tests.page_helpers import (
    PageErrors,
    card,
    open_page,
    throttle_uploads,
    upload_rows,
    wait_uploads_finished,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
CHUNK = 8 * MiB
WAIT_MS = 60_000
VENDOR = ROOT / "uploads_api" / "web" / "vendor"
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """The page's context, with a longer wait: a resumable upload takes its time."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    headers: dict[str, str]


class TusTraffic:
    """The page's requests under /v1/tus/ (a method override would show up as POST)."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Sent] = []
        self.offsets: list[int] = []  # Upload-Offset of each HEAD answer
        page.on("request", self._request)
        page.on("response", self._response)

    def _request(self, request: Any) -> None:
        path = urlsplit(request.url).path
        if path.startswith("/v1/tus/"):
            self.requests.append(Sent(request.method, path, dict(request.headers)))

    def _response(self, response: Any) -> None:
        if response.request.method == "HEAD" and "/v1/tus/" in response.url:
            self.offsets.append(int(response.headers["upload-offset"]))

    def methods(self) -> list[str]:
        return [sent.method for sent in self.requests]

    def patches(self) -> list[Sent]:
        return [sent for sent in self.requests if sent.method == "PATCH"]


def unfinished(server: Server, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """``GET /v1/tus/``: the unfinished uploads, with their offsets."""
    answer = httpx.get(f"{server.url}/v1/tus/", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    uploads: list[dict[str, Any]] = answer.json()["uploads"]
    # Each URL is a path, which a client resolves against the server's address.
    return [{**upload, "url": str(httpx.URL(server.url).join(upload["url"]))} for upload in uploads]


def wait_acknowledged(server: Server, at_least: int) -> dict[str, Any]:
    """The one unfinished upload, once the server has acknowledged ``at_least`` bytes."""
    found: list[dict[str, Any]] = []

    def far_enough() -> bool:
        found[:] = unfinished(server)
        return len(found) == 1 and found[0]["offset"] >= at_least

    wait_for(far_enough, timeout=60, what=f"{at_least} bytes acknowledged", interval=0.2)
    return found[0]


def head_offset(url: str) -> int:
    answer = httpx.head(url, headers=TUS, timeout=10)
    assert answer.status_code == 200, answer.headers
    return int(answer.headers["upload-offset"])


def stored(server: Server, name: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    files = httpx.get(f"{server.url}/v1/files", headers=headers, timeout=10).json()["files"]
    matching = [f for f in files if f["filename"] == name]
    assert len(matching) == 1, files
    record: dict[str, Any] = matching[0]
    return record


def content(server: Server, file_id: str, headers: dict[str, str] | None = None) -> bytes:
    answer = httpx.get(f"{server.url}/v1/files/{file_id}/content", headers=headers, timeout=60)
    assert answer.status_code == 200
    return answer.content


def tus_entries(page: Page) -> list[dict[str, Any]]:
    """What tus-js-client keeps in localStorage to resume: one entry per unfinished upload."""
    entries: list[dict[str, Any]] = page.evaluate(
        """() => Object.keys(localStorage).filter(k => k.startsWith("tus::"))
            .map(k => JSON.parse(localStorage.getItem(k)))"""
    )
    return entries


def row(page: Page, name: str) -> dict[str, Any]:
    return next(r for r in upload_rows(page) if r["name"] == name)


def test_the_vendored_library_is_the_registry_build(server: Server) -> None:
    """tus.min.js is the npm package's build as scripts/vendor-tus-js-client.sh wrote it,
    with its licence, and needs no eval (the page's CSP forbids it)."""
    build = (VENDOR / "tus.min.js").read_bytes()
    match = re.fullmatch(
        r"tus-js-client (4\.\d+\.\d+) sha256:([0-9a-f]{64})\n",
        (VENDOR / "tus-js-client.version").read_text(),
    )
    assert match, "tus-js-client.version is not 'tus-js-client 4.x.y sha256:<hex>'"
    assert hashlib.sha256(build).hexdigest() == match[2], "tus.min.js was changed by hand"
    assert "MIT License" in (VENDOR / "tus-js-client.LICENSE").read_text()
    assert not re.search(rb"(^|[^.\w$])eval\(|new Function\(|Function\(\"", build)
    served = httpx.get(f"{server.url}/static/vendor/tus.min.js")
    assert served.status_code == 200 and served.content == build
    assert served.headers["content-type"].startswith("text/javascript")


@pytest.mark.slow
def test_a_large_file_goes_up_over_tus_with_the_key(
    server_factory: ServerFactory, page: Page, tmp_path: Path
) -> None:
    """20 MiB in three chunks, every request with the key; a small file beside it still
    goes in one PUT. The file is recorded as resumable, with the bytes sent."""
    server = server_factory()
    key = create_key(server.data_dir, "page", admin=True)
    wait_closed(server)
    auth = bearer(key)
    errors = PageErrors(page, allowed=("status of 401",))
    traffic = TusTraffic(page)
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    open_page(page, server)
    page.locator("#key-dialog").wait_for(state="visible")
    page.fill("#key-input", key)
    page.get_by_role("button", name="Continue").click()
    page.get_by_text("No files yet").wait_for()

    large = random_file(tmp_path / "large.bin", 20 * MiB)
    small = random_file(tmp_path / "small.bin", 100_000)
    page.set_input_files("#file-input", [str(large), str(small)])
    rows = {r["name"]: r for r in wait_uploads_finished(page, 2)}
    assert all(r["state"] in ("uploaded", "done") for r in rows.values()), rows

    record = stored(server, large.name, auth)
    assert content(server, record["id"], auth) == large.read_bytes()
    assert record["sha256"] == hashlib.sha256(large.read_bytes()).hexdigest()
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as api:
        assert [e["file_id"] for e in resumable_audit(api)] == [record["id"]]
    assert traffic.methods() == ["POST", "PATCH", "PATCH", "PATCH"]
    assert [int(p.headers["upload-offset"]) for p in traffic.patches()] == [0, CHUNK, 2 * CHUNK]
    assert all(s.headers.get("authorization") == f"Bearer {key}" for s in traffic.requests)
    created = traffic.requests[0].headers
    assert created["upload-length"] == str(20 * MiB)
    assert "filename bGFyZ2UuYmlu" in created["upload-metadata"]  # base64 of large.bin
    # The upload became the file it names, which the page shows like any other.
    assert traffic.patches()[-1].path == f"/v1/tus/{record['id']}"
    assert [urlsplit(url).path for url in puts] == ["/v1/files/small.bin"]
    card(page, large.name).wait_for()
    assert tus_entries(page) == [], "a finished upload is not kept for resuming"
    assert unfinished(server, auth) == []
    errors.assert_none()


@pytest.mark.slow
def test_a_reload_mid_upload_resumes_from_the_servers_offset(
    server: Server, page: Page, tmp_path: Path
) -> None:
    """The page is reloaded while a 40 MiB upload is under way, after at least a chunk
    was acknowledged. The same file chosen again goes on in the same upload from the
    offset the server has, and completes with the right bytes."""
    big = random_file(tmp_path / "big.bin", 40 * MiB)
    page.on("dialog", lambda dialog: dialog.accept())  # "leave the page?" while uploading
    errors = PageErrors(page)
    open_page(page, server)
    throttle_uploads(page, 4_000_000)
    page.set_input_files("#file-input", str(big))
    upload = wait_acknowledged(server, CHUNK)
    assert upload["length"] == 40 * MiB and upload["metadata"]["filename"] == big.name

    page.reload()
    page.wait_for_selector("html[data-ready]")
    throttle_uploads(page, None)
    offset = head_offset(upload["url"])
    assert CHUNK <= offset < 40 * MiB
    assert [u["id"] for u in unfinished(server)] == [upload["id"]]
    kept = tus_entries(page)
    assert [entry["uploadUrl"] for entry in kept] == [upload["url"]]

    traffic = TusTraffic(page)
    page.set_input_files("#file-input", str(big))
    (done,) = wait_uploads_finished(page, 1)
    assert done["state"] in ("uploaded", "done"), done
    assert "POST" not in traffic.methods(), "a new upload was created instead of resuming"
    assert traffic.requests[0].method == "HEAD"
    assert traffic.requests[0].path == urlsplit(upload["url"]).path
    assert traffic.offsets[0] >= offset
    first = int(traffic.patches()[0].headers["upload-offset"])
    assert first == traffic.offsets[0], "the first PATCH starts where the server stood"
    assert {p.path for p in traffic.patches()} == {urlsplit(upload["url"]).path}

    record = stored(server, big.name)
    assert record["id"] == upload["id"]
    assert content(server, record["id"]) == big.read_bytes()
    assert unfinished(server) == []
    assert tus_entries(page) == []
    errors.assert_none()


@pytest.mark.slow
def test_pause_and_resume_on_the_same_page(server: Server, page: Page, tmp_path: Path) -> None:
    """Pause stops sending and frees the row's slot; Resume goes on in the same upload
    from the server's offset. The buttons are real buttons, named for the file."""
    data = random_file(tmp_path / "paused.bin", 24 * MiB)
    errors = PageErrors(page)
    traffic = TusTraffic(page)
    open_page(page, server)
    throttle_uploads(page, 4_000_000)
    page.set_input_files("#file-input", str(data))
    upload = wait_acknowledged(server, CHUNK)

    pause = page.get_by_role("button", name=f"Pause upload of {data.name}")
    pause.click()
    resume = page.get_by_role("button", name=f"Resume upload of {data.name}")
    resume.wait_for()
    assert resume.evaluate("node => node === document.activeElement"), "focus stays put"
    assert pause.count() == 0
    assert page.get_by_role("button", name=f"Cancel upload of {data.name}").is_visible()
    paused = row(page, data.name)
    assert paused["state"] == "paused"
    assert re.match(r"Paused · \d+ % · [\d.]+ MB of 25 MB", paused["status"]), paused
    assert "1 paused" in page.locator("#queue-summary").inner_text()

    # Nothing moves while paused: the offset holds and the page sends nothing. (The server
    # may take a moment to keep what arrived of the chunk cut off.)
    page.wait_for_timeout(500)
    offset = head_offset(upload["url"])
    sent = len(traffic.requests)
    page.wait_for_timeout(1500)
    assert head_offset(upload["url"]) == offset
    assert len(traffic.requests) == sent
    assert 0 < offset < 24 * MiB

    throttle_uploads(page, None)
    resume.click()
    (done,) = wait_uploads_finished(page, 1)
    assert done["state"] in ("uploaded", "done"), done
    after = traffic.requests[sent:]
    assert after[0].method == "HEAD" and "POST" not in [s.method for s in after]
    assert int(after[1].headers["upload-offset"]) == offset
    record = stored(server, data.name)
    assert record["id"] == upload["id"]
    assert content(server, record["id"]) == data.read_bytes()
    errors.assert_none()


@pytest.mark.slow
def test_uploads_past_the_concurrency_limit_wait_their_turn(
    server_factory: ServerFactory, page: Page, tmp_path: Path
) -> None:
    """With one upload in flight allowed per key, two large files chosen together both
    finish: a PATCH refused with 429 is tried again later, as 423 and 409 are."""
    server = server_factory(max_concurrent_uploads=1)
    errors = PageErrors(page, allowed=("status of 429", "ERR_CONNECTION"))
    traffic = TusTraffic(page)
    open_page(page, server)
    throttle_uploads(page, 8_000_000)
    files = [random_file(tmp_path / f"part-{n}.bin", 10 * MiB) for n in (1, 2)]
    page.set_input_files("#file-input", [str(p) for p in files])
    rows = wait_uploads_finished(page, 2)
    assert all(r["state"] in ("uploaded", "done") for r in rows), rows
    for path in files:
        assert content(server, stored(server, path.name)["id"]) == path.read_bytes()
    assert traffic.methods().count("POST") == 2, "each file went up in one upload"
    assert " 429 " in server.logs(), "the limit was reached"
    errors.assert_none()


def test_a_refused_upload_shows_the_servers_words(
    server_factory: ServerFactory, page: Page, tmp_path: Path
) -> None:
    """A tus refusal (here the quota, at creation) shows the problem's detail, and the row
    can be tried again."""
    server = server_factory(quota_bytes=10 * MiB)
    errors = PageErrors(page, allowed=("status of 413",))
    open_page(page, server)
    large = random_file(tmp_path / "over-quota.bin", 12 * MiB)
    page.set_input_files("#file-input", str(large))
    (failed,) = wait_uploads_finished(page, 1)
    assert failed["state"] == "failed", failed
    refusal = httpx.post(
        f"{server.url}/v1/tus/", headers={**TUS, "Upload-Length": str(12 * MiB)}
    ).json()
    assert failed["status"] == refusal["detail"], (failed, refusal)
    assert page.get_by_role("button", name=f"Retry upload of {large.name}").is_visible()
    errors.assert_none()
