"""Driving the upload page in Debian's Chromium through Playwright, and checking it with
axe-core.

No browser is downloaded: the tests use ``/usr/bin/chromium`` (``apt-get install
chromium``). Without it, or without the ``playwright`` package, page tests are skipped,
except under ``CI=true``, where a missing browser must fail the run rather than hide it.
axe-core is read from ``.cache/node`` (``make test-tools``), never from the network, and
follows the same rule when it is missing.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

    from tests.conftest import Server

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / ".cache" / "node" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing_browser() -> str | None:
    """Why the page tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"page tests cannot run in CI: {reason}")
    pytest.skip(reason)


def require_browser() -> None:
    reason = missing_browser()
    if reason is not None:
        unavailable(reason)


def require_axe() -> None:
    if not AXE.is_file():
        where = AXE.relative_to(ROOT)
        unavailable(f"{where} is missing: `make test-tools` installs axe-core (it needs npm)")


def launch() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


class PageErrors:
    """Console errors and uncaught exceptions of a page (a CSP violation is one)."""

    def __init__(self, page: Page, allowed: tuple[str, ...] = ()) -> None:
        self.allowed = allowed
        self.messages: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.messages.append(f"uncaught: {error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error" and not any(a in message.text for a in self.allowed):
            self.messages.append(message.text)

    def assert_none(self) -> None:
        assert not self.messages, "errors in the page:\n" + "\n".join(self.messages)


DROP_SCRIPT = """
async ({ target, files, release }) => {
  const transfer = new DataTransfer();
  for (const { name, type, data } of files) {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, { type }));
  }
  const zone = document.querySelector(target);
  const init = { bubbles: true, cancelable: true, dataTransfer: transfer };
  const fire = (type) => zone.dispatchEvent(new DragEvent(type, init));
  fire("dragenter");
  fire("dragover");
  const highlighted = zone.classList.contains("is-over");
  if (release) fire("drop");
  return highlighted;
}
"""


def drop_files(page: Page, target: str, paths: list[Path], mime: str) -> bool:
    """Drag ``paths`` onto ``target`` as the browser would for files from the desktop.
    Returns whether the target was highlighted while the files hovered over it."""
    files = [
        {"name": p.name, "type": mime, "data": base64.b64encode(p.read_bytes()).decode()}
        for p in paths
    ]
    highlighted: bool = page.evaluate(
        DROP_SCRIPT, {"target": target, "files": files, "release": True}
    )
    return highlighted


WEB_DIR = ROOT / "uploads_api" / "web"
STATIC_ORIGIN = "http://page.test"


def open_static(page: Page) -> None:
    """An empty page whose origin serves ``uploads_api/web`` at ``/static`` from disk, for
    testing the page's modules on their own without starting a server."""

    def serve(route: Any) -> None:
        name = route.request.url.removeprefix(f"{STATIC_ORIGIN}/static/")
        path = WEB_DIR / name
        if "/" in name or not path.is_file():
            route.fulfill(status=404, body="")
        else:
            kind = "text/javascript" if name.endswith(".js") else "application/octet-stream"
            route.fulfill(status=200, content_type=kind, body=path.read_bytes())

    page.route(f"{STATIC_ORIGIN}/static/**", serve)
    page.route(
        f"{STATIC_ORIGIN}/",
        lambda route: route.fulfill(
            content_type="text/html", body="<!doctype html><title>t</title>"
        ),
    )
    page.goto(f"{STATIC_ORIGIN}/")


def throttle_uploads(page: Page, bytes_per_second: int | None) -> None:
    """Slow the page's uploads down (Chromium's network emulation); None lifts the limit."""
    session = page.context.new_cdp_session(page)
    session.send("Network.enable")
    session.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second if bytes_per_second else -1,
        },
    )


def upload_rows(page: Page) -> list[dict[str, Any]]:
    """The upload queue as the page shows it: name, state, progress value, status text."""
    rows: list[dict[str, Any]] = page.eval_on_selector_all(
        "#queue-list .upload",
        """rows => rows.map(row => ({
            name: row.querySelector(".upload-name").textContent,
            state: row.dataset.state,
            progress: row.querySelector("progress").value,
            status: row.querySelector(".upload-status").textContent.replaceAll("\\u00a0", " "),
        }))""",
    )
    return rows


def open_page(page: Page, server: Server) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("html[data-ready]")


def wait_uploads_finished(page: Page, count: int) -> list[dict[str, Any]]:
    page.wait_for_function(
        """count => {
            const rows = [...document.querySelectorAll("#queue-list .upload")];
            const ended = ["done", "uploaded", "processing-failed", "failed"];
            return rows.length === count && rows.every(row => ended.includes(row.dataset.state));
        }""",
        arg=count,
    )
    return upload_rows(page)


def card(page: Page, name: str) -> Locator:
    return page.locator(".card", has=page.locator(".card-name", has_text=name))


def wait_thumbnail(page: Page, name: str) -> None:
    img = card(page, name).locator("img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())


SERIOUS = ("serious", "critical")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """What axe-core finds wrong with the page as it is now, with serious or critical impact.

    The rules axe runs by default: WCAG 2.0 to 2.2 at levels A and AA, and its best
    practices (AAA and experimental rules are off). The script goes in as an inline
    <script>, which the page's CSP refuses: the context needs ``bypass_csp=True``
    (tests/test_page.py checks the CSP itself).
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=AXE)
    results = page.evaluate("() => axe.run(document, { resultTypes: ['violations'] })")
    return [v for v in results["violations"] if v["impact"] in SERIOUS]


def describe_violations(found: dict[str, list[dict[str, Any]]]) -> str:
    """One paragraph per view: each rule with its impact, then the nodes it names."""
    lines = []
    for view, violations in found.items():
        lines.append(f"{view}:")
        for violation in violations:
            lines.append(f"  {violation['id']} ({violation['impact']}): {violation['help']}")
            for node in violation["nodes"]:
                why = " ".join(node.get("failureSummary", "").split())
                lines.append(f"    {' > '.join(map(str, node['target']))}  {why}")
    return "\n".join(lines)
