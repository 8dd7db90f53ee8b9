"""Signed links (``POST /v1/files/{id}/links``) through a real server with keys on: the
bytes (with Range), a thumbnail and a variant read without a key, with the cache
headers a link allows; refused when the path, the size, the spec, the token or the method
is not the one signed, once expired, after the signing key is rotated out; 404 once the
file is deleted; ``UPLOADS_PUBLIC_URL`` in the URL; a variant link as an ``<img src>`` in
Chromium, and the page's "Copy link"."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests import imagegen
from tests.conftest import Server, ServerFactory
from tests.helpers import (
    assert_problem,
    bearer,
    create_keys,
    upload,
    wait_closed,
    wait_done,
)
from tests.page_helpers import PageErrors, card, launch, open_page, require_browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.e2e

OLD_KEY = "old-link-signing-key-" + "o" * 32
NEW_KEY = "new-link-signing-key-" + "n" * 32
SPEC = "w=100"


@dataclass(frozen=True)
class Live:
    server: Server
    keys: dict[str, str]
    photo: str
    text: str

    def client(self, owner: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers=bearer(self.keys[owner]), timeout=60)


def _ready(client: httpx.Client, path: Path) -> str:
    (record,) = upload(client, path)
    record = wait_done(client, record["id"])
    assert record["status"] == "ready", record
    return str(record["id"])


@pytest.fixture(scope="module")
def live(module_server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory) -> Live:
    server = module_server_factory(signing_key=OLD_KEY)
    keys = create_keys(server.data_dir, "alice", "bob", "ops", admin=("ops",))
    wait_closed(server)
    folder = tmp_path_factory.mktemp("files")
    text = folder / "notes.txt"
    text.write_bytes(b"0123456789" * 100)
    with httpx.Client(base_url=server.url, headers=bearer(keys["alice"]), timeout=60) as alice:
        photo = _ready(alice, imagegen.jpeg_photo(folder, size=(640, 480), gps=False))
        text_id = _ready(alice, text)
    return Live(server, keys, photo, text_id)


@pytest.fixture(scope="module")
def alice(live: Live) -> Iterator[httpx.Client]:
    with live.client("alice") as client:
        yield client


def make_link(client: httpx.Client, file_id: str, **body: Any) -> str:
    body.setdefault("expires_in", 600)
    response = client.post(f"/v1/files/{file_id}/links", json=body)
    assert response.status_code == 201, response.text
    answer = response.json()
    expires_at = datetime.fromisoformat(answer["expires_at"])
    assert expires_at.tzinfo is not None
    assert abs(expires_at.timestamp() - (time.time() + body["expires_in"])) < 10
    url: str = answer["url"]
    return url


def max_age(response: httpx.Response) -> int:
    found = re.fullmatch(r"public, max-age=(\d+), immutable", response.headers["cache-control"])
    assert found, response.headers["cache-control"]
    return int(found[1])


def test_a_link_reads_the_bytes_without_a_key(live: Live, alice: httpx.Client) -> None:
    url = make_link(alice, live.text, target="content")
    assert url.startswith(f"{live.server.url}/v1/files/{live.text}/content?link=")
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == b"0123456789" * 100
    assert whole.headers["cache-control"] == "private, max-age=0, must-revalidate"
    assert whole.headers["content-disposition"].startswith("attachment")
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == b"0123456789"


def test_a_link_reads_a_thumbnail_and_a_variant(live: Live, alice: httpx.Client) -> None:
    thumb = httpx.get(make_link(alice, live.photo, target="thumbnail", size=256, expires_in=300))
    assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/")
    assert 290 <= max_age(thumb) <= 300
    variant = httpx.get(make_link(alice, live.photo, target="variant", variant=SPEC))
    assert variant.status_code == 200 and variant.headers["content-type"] == "image/webp"
    assert 590 <= max_age(variant) <= 600
    # With a key, as before: private.
    assert alice.get(f"/v1/files/{live.photo}/variants/{SPEC}").headers["cache-control"] == (
        "private, max-age=86400"
    )


def test_an_admin_may_link_and_another_owner_gets_404(live: Live) -> None:
    with live.client("ops") as ops:
        assert httpx.get(make_link(ops, live.text, target="content")).status_code == 200
    with live.client("bob") as bob:
        response = bob.post(
            f"/v1/files/{live.text}/links", json={"target": "content", "expires_in": 60}
        )
    assert_problem(response, 404, "not-found")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"target": "content", "expires_in": 604801}, 422, "validation-error"),
        ({"target": "content", "expires_in": 0}, 422, "validation-error"),
        ({"target": "thumbnail", "size": 99, "expires_in": 60}, 409, "thumbnail-not-ready"),
        ({"target": "variant", "variant": "w=0", "expires_in": 60}, 400, "invalid-variant-spec"),
        ({"target": "variant", "expires_in": 60}, 422, "validation-error"),
        ({"target": "content", "size": 256, "expires_in": 60}, 422, "validation-error"),
    ],
)
def test_links_that_cannot_be_made_are_refused(
    live: Live, alice: httpx.Client, body: dict[str, Any], status: int, code: str
) -> None:
    assert_problem(alice.post(f"/v1/files/{live.photo}/links", json=body), status, code)


def test_a_link_opens_only_what_was_signed(live: Live, alice: httpx.Client) -> None:
    content = make_link(alice, live.photo, target="content")
    thumb = make_link(alice, live.photo, target="thumbnail", size=256)
    variant = make_link(alice, live.photo, target="variant", variant=SPEC)
    tampered = [
        content.replace(live.photo, live.text),  # another file
        thumb.replace("/thumbnails/256", "/thumbnails/1024"),  # another size
        variant.replace(SPEC, "w=200"),  # another spec
        thumb.replace("/thumbnails/256", "/content"),  # another route of the same file
        content[:-3] + ("AAA" if not content.endswith("AAA") else "BBB"),  # another signature
    ]
    for url in tampered:
        assert_problem(httpx.get(url), 403, "invalid-link")
    # Not a GET: the method is signed too, and no other route takes a link.
    link = "?" + urlsplit(content).query
    assert httpx.post(content).status_code == 405
    base = f"{live.server.url}/v1/files/{live.photo}"
    assert_problem(httpx.delete(base + link), 401, "unauthorized")
    assert_problem(httpx.get(base + link), 401, "unauthorized")
    assert_problem(httpx.post(f"{base}/retry{link}"), 401, "unauthorized")
    assert alice.get(f"/v1/files/{live.photo}").status_code == 200


def test_an_expired_link_is_refused(live: Live, alice: httpx.Client) -> None:
    url = make_link(alice, live.text, target="content", expires_in=1)
    time.sleep(2.1)
    assert_problem(httpx.get(url), 403, "link-expired")


def test_a_link_to_a_deleted_file_is_404(live: Live, alice: httpx.Client, tmp_path: Path) -> None:
    (tmp_path / "gone.txt").write_bytes(b"soon gone")
    file_id = _ready(alice, tmp_path / "gone.txt")
    url = make_link(alice, file_id, target="content")
    assert httpx.get(url).status_code == 200
    assert alice.delete(f"/v1/files/{file_id}").status_code == 204
    assert_problem(httpx.get(url), 404, "not-found")


def test_the_public_url_and_rotating_the_signing_key(server_factory: ServerFactory) -> None:
    public = "https://files.example.com"
    server = server_factory(signing_key=OLD_KEY, public_url=public)
    keys = create_keys(server.data_dir, "alice")
    wait_closed(server)
    with httpx.Client(base_url=server.url, headers=bearer(keys["alice"]), timeout=60) as alice:
        (record,) = alice.post(
            "/v1/files", files={"file": ("a.txt", b"rotate me", "text/plain")}
        ).json()["files"]
        url = make_link(alice, record["id"], target="content")
    assert url.startswith(f"{public}/v1/files/{record['id']}/content?link=")
    local = server.url + url.removeprefix(public)
    assert httpx.get(local).content == b"rotate me"

    def restart(signing_key: str) -> None:
        server.stop()
        server.env["UPLOADS_SIGNING_KEY"] = signing_key
        server.start()

    restart(f"{NEW_KEY},{OLD_KEY}")  # a new key first: links of the old one still work
    assert httpx.get(local).content == b"rotate me"
    restart(NEW_KEY)  # the old key dropped: its links end
    assert_problem(httpx.get(local), 403, "invalid-link")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser()
    yield from launch()


def test_a_variant_link_is_an_img_src_in_chromium(
    live: Live, alice: httpx.Client, browser: Browser
) -> None:
    url = make_link(alice, live.photo, target="variant", variant=SPEC)
    page = browser.new_page()
    try:
        page.set_content(f'<!doctype html><title>t</title><img id="v" src="{url}" alt="">')
        page.wait_for_function("() => document.getElementById('v').complete", timeout=30_000)
        width = page.evaluate("() => document.getElementById('v').naturalWidth")
    finally:
        page.close()
    assert width == 100


def test_the_details_dialog_copies_a_working_link(live: Live, browser: Browser) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        errors = PageErrors(page, allowed=("status of 401",))
        open_page(page, live.server)
        page.locator("#key-dialog").wait_for(state="visible")
        page.fill("#key-input", live.keys["alice"])
        page.get_by_role("button", name="Continue").click()
        card(page, "notes.txt").locator("button").click()
        page.get_by_role("button", name="Copy link").click()
        page.locator("#details-share-status", has_text="Link copied").wait_for()
        url = page.evaluate("() => navigator.clipboard.readText()")
        errors.assert_none()
    finally:
        context.close()
    assert url.startswith(f"{live.server.url}/v1/files/{live.text}/content?link=")
    assert httpx.get(url).content == b"0123456789" * 100
