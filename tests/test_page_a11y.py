"""The upload page as axe-core sees it: no serious or critical violation in any view.

Each view is checked in the light and the dark colour scheme (their contrasts differ): the
empty page; uploads under way (uploading, queued); the queue once done (done, refused,
processing failed) beside the gallery (images with thumbnails, PDF, text and binary files
as tiles, a failed file); the details dialog of an image, a text file and a failed file;
the delete confirmation; a phone's layout; the API key prompt and its banner; a file sent
resumably, under way and paused. axe-core is read from ``.cache/node`` (``make
test-tools``), never fetched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from tests import imagegen
from tests.conftest import Server, ServerFactory
from tests.page_helpers import (
    PageErrors,
    axe_violations,
    card,
    describe_violations,
    launch,
    open_page,
    require_axe,
    require_browser,
    throttle_uploads,
    upload_rows,
    wait_thumbnail,
    wait_uploads_finished,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.e2e

WAIT_MS = 30_000
MAX_FILE_SIZE = 200_000
SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
# A new colour scheme starts colour transitions, each a frame long under reduced motion but
# passed down the tree one level per frame: axe must not read colours halfway through.
SETTLED = "() => document.getAnimations().length === 0"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser()
    require_axe()
    yield from launch()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # bypass_csp: axe goes in as an inline script. Reduced motion: the page's own rule that
    # cuts transitions short and plays its spinners once, so that the page comes to rest.
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True, reduced_motion="reduce"
    )
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


class Audit:
    """Runs axe on each view in both colour schemes and keeps what it finds, by view."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.found: dict[str, list[dict[str, Any]]] = {}

    def check(self, view: str) -> None:
        for scheme in SCHEMES:
            self.page.emulate_media(color_scheme=scheme)
            self.page.wait_for_function(SETTLED)
            violations = axe_violations(self.page)
            if violations:
                self.found[f"{view}, {scheme}"] = violations
        self.page.emulate_media(color_scheme="null")  # back to the browser's own

    def assert_clean(self) -> None:
        assert not self.found, "axe-core found serious or critical violations:\n" + (
            describe_violations(self.found)
        )


def test_every_view_of_the_page_passes_axe(
    server_factory: ServerFactory, context: BrowserContext, tmp_path: Path
) -> None:
    server = server_factory(max_file_size=MAX_FILE_SIZE)
    page = context.new_page()
    errors = PageErrors(page, allowed=("status of 413",))
    audit = Audit(page)
    open_page(page, server)
    page.get_by_text("No files yet").wait_for()
    audit.check("the empty page")

    photo = imagegen.jpeg_photo(tmp_path, size=(800, 600))
    palette = imagegen.palette_png_transparent(tmp_path)
    pdf = imagegen.pdf_file(tmp_path)
    text = imagegen.not_an_image(tmp_path)
    broken = imagegen.truncated_jpeg(tmp_path)
    blobs = [tmp_path / f"data-{n}.bin" for n in (1, 2)]
    for blob in blobs:
        blob.write_bytes(os.urandom(150_000))
    too_big = tmp_path / "too-big.bin"
    too_big.write_bytes(os.urandom(MAX_FILE_SIZE + 100_000))
    files = [photo, *blobs, too_big, palette, pdf, text, broken]

    # Slowed down, the first three hold the three upload slots and the others wait.
    throttle_uploads(page, 50_000)
    page.set_input_files("#file-input", [str(p) for p in files])
    page.wait_for_function(
        "() => [...document.querySelectorAll('.upload progress')].some(p => p.value >= 5)"
    )
    states = {row["state"] for row in upload_rows(page)}
    assert {"uploading", "queued"} <= states, states
    audit.check("uploads under way")
    throttle_uploads(page, None)

    rows = {row["name"]: row["state"] for row in wait_uploads_finished(page, len(files))}
    assert rows[too_big.name] == "failed", rows
    for image in (photo, palette):
        wait_thumbnail(page, image.name)
    page.wait_for_function(
        """() => [...document.querySelectorAll('.upload')]
            .every(r => ['done', 'processing-failed', 'failed'].includes(r.dataset.state))"""
    )
    assert card(page, broken.name).get_attribute("data-status") == "failed"
    assert card(page, text.name).locator(".file-icon").inner_text() == "TXT"
    audit.check("the queue and the gallery, done")

    dialog = page.locator("#details")
    for name_of, wait_for in [
        (photo.name, "#details .details-picture.is-loaded"),
        (text.name, "#details .details-picture[data-kind=other]"),
        (broken.name, "#details-retry:not([hidden])"),
    ]:
        card(page, name_of).locator("button").click()
        dialog.wait_for(state="visible")
        page.locator(wait_for).wait_for()
        audit.check(f"the details of {name_of}")
        if name_of == photo.name:
            page.locator("#details-delete").click()
            page.locator("#delete-confirm").wait_for(state="visible")
            audit.check("the delete confirmation")
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")

    page.set_viewport_size({"width": 375, "height": 812})
    audit.check("a phone's layout")
    card(page, photo.name).locator("button").click()
    page.locator("#details .details-picture.is-loaded").wait_for()
    audit.check("a phone's layout, the details")

    errors.assert_none()
    audit.assert_clean()
    # A card is named by the text it shows, and says that it opens a dialog.
    named = re.compile(rf"^{re.escape(broken.name)} .* Failed$")
    opener = page.get_by_role("button", name=named)
    assert opener.count() == 1
    assert opener.get_attribute("aria-haspopup") == "dialog"


def test_the_api_key_prompt_passes_axe(server: Server, context: BrowserContext) -> None:
    """The prompt and, once declined, the banner that says why nothing shows. The server's
    401 is simulated at the network edge, as in tests/test_page_keys.py."""
    page = context.new_page()
    errors = PageErrors(page, allowed=("status of 401",))
    audit = Audit(page)

    def refuse(route: Any) -> None:
        route.fulfill(
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="uploads-api"'},
            content_type="application/problem+json",
            body='{"status": 401, "code": "unauthorized", "detail": "an API key is needed"}',
        )

    page.route(re.compile(r"/v1/"), refuse)
    open_page(page, server)
    page.locator("#key-dialog").wait_for(state="visible")
    audit.check("the API key prompt")
    page.fill("#key-input", "wrong-key")
    page.keyboard.press("Enter")
    page.locator("#key-error:not([hidden])").wait_for()
    audit.check("the API key prompt, a wrong key")
    page.keyboard.press("Escape")
    page.locator("#banner", has_text="needs an API key").wait_for()
    audit.check("the banner asking for a key")
    errors.assert_none()
    audit.assert_clean()


def test_a_resumable_upload_passes_axe(
    server: Server, context: BrowserContext, tmp_path: Path
) -> None:
    """A file large enough to go over tus: its row under way (Pause, Cancel) and paused
    (Resume, Cancel)."""
    page = context.new_page()
    errors = PageErrors(page)
    audit = Audit(page)
    open_page(page, server)
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(9 * 1024 * 1024))
    throttle_uploads(page, 1_000_000)
    page.set_input_files("#file-input", str(large))
    pause = page.get_by_role("button", name=f"Pause upload of {large.name}")
    pause.wait_for()
    audit.check("a resumable upload under way")
    pause.click()
    page.get_by_role("button", name=f"Resume upload of {large.name}").wait_for()
    audit.check("a resumable upload, paused")
    page.get_by_role("button", name=f"Cancel upload of {large.name}").click()
    page.locator(".upload[data-state=cancelled]").wait_for()
    errors.assert_none()
    audit.assert_clean()
