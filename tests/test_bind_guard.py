"""The bind guard: no API calls off loopback while no API key exists."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from tests.conftest import ROOT, TEST_ENV, free_port
from uploads_api.api.bind_guard import LoopbackOnlyWhileOpen
from uploads_api.api.problems import PROBLEM_TYPE_BASE
from uploads_api.app import create_app
from uploads_api.config import Settings

PUBLIC = ("10.0.0.5", 8000)
LOCAL = [("127.0.0.1", 8000), ("127.3.2.1", 8000), ("::1", 8000), ("::ffff:127.0.0.1", 8000)]


class Inner:
    """The wrapped app: answers 200 and remembers whether it ran."""

    def __init__(self) -> None:
        self.called = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


def call(server: Any, path: str = "/v1/files", *, is_open: bool = True) -> tuple[Inner, Any]:
    """Run one request through the guard; the inner app and the response (status, headers,
    body) it produced."""
    inner = Inner()
    sent: list[Message] = []

    async def opened() -> bool:
        return is_open

    async def receive() -> Message:
        raise AssertionError("the guard must not read the body")

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "headers": [],
        "server": server,
        "client": ("203.0.113.9", 5555),
    }

    async def run() -> None:
        guard = LoopbackOnlyWhileOpen(inner, is_open=opened)
        await guard(scope, receive, send)

    asyncio.run(run())
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return inner, (sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:]))


@pytest.mark.parametrize("path", ["/v1/files", "/v1/files/abc/content", "/v1/tasks", "/metrics"])
def test_an_open_server_refuses_api_calls_off_loopback(path: str) -> None:
    inner, (status, headers, body) = call(PUBLIC, path)
    assert not inner.called
    assert status == 403
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["code"] == "keys-required"
    assert problem["type"] == PROBLEM_TYPE_BASE + "keys-required"
    assert problem["status"] == 403
    assert problem["instance"] == path
    assert "uploads-api keys create OWNER" in problem["detail"]


@pytest.mark.parametrize("server", [*LOCAL, None, ("/run/uploads.sock", None)])
def test_an_open_server_answers_on_loopback_and_unix_sockets(server: Any) -> None:
    inner, (status, _, body) = call(server)
    assert inner.called
    assert (status, body) == (200, b"inner")


@pytest.mark.parametrize("server", [PUBLIC, ("2001:db8::1", 8000), ("0.0.0.0", 8000)])
def test_a_server_with_keys_answers_everywhere(server: Any) -> None:
    inner, (status, _, _) = call(server, is_open=False)
    assert inner.called
    assert status == 200


@pytest.mark.parametrize(
    "path", ["/", "/healthz", "/readyz", "/docs", "/openapi.json", "/static/app.js"]
)
def test_public_paths_pass_off_loopback(path: str) -> None:
    inner, (status, _, _) = call(PUBLIC, path)
    assert inner.called
    assert status == 200


def test_the_refusal_is_logged_once_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    inner, calls = Inner(), 3

    async def opened() -> bool:
        return True

    async def receive() -> Message:
        raise AssertionError("the guard must not read the body")

    async def send(message: Message) -> None:
        pass

    async def run() -> None:
        guard = LoopbackOnlyWhileOpen(inner, is_open=opened)
        for _ in range(calls):
            scope = {"type": "http", "method": "GET", "path": "/v1/files", "server": PUBLIC}
            await guard(scope, receive, send)

    with caplog.at_level(logging.DEBUG, logger="uploads_api.api.bind_guard"):
        asyncio.run(run())
    levels = [r.levelno for r in caplog.records if r.name == "uploads_api.api.bind_guard"]
    assert levels == [logging.WARNING] + [logging.DEBUG] * (calls - 1)
    assert "10.0.0.5" in caplog.records[0].getMessage()


def test_the_whole_app_refuses_until_a_key_exists(tmp_path: Path) -> None:
    # In process: httpx's ASGITransport sets scope["server"] from the URL, and sends nothing.
    settings = Settings(
        data_dir=tmp_path / "d", image_workers=1, task_concurrency=2, shutdown_grace_seconds=1
    )
    app = create_app(settings)
    guarded = LoopbackOnlyWhileOpen(app, is_open=app.state.runtime.authenticator.is_open)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=guarded)
            async with (
                httpx.AsyncClient(transport=transport, base_url="http://10.1.2.3:8000") as far,
                httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as near,
            ):
                refused = await far.get("/v1/files")
                assert refused.status_code == 403
                assert refused.headers["content-type"] == "application/problem+json"
                assert refused.json()["code"] == "keys-required"
                assert (await far.get("/healthz")).status_code == 200
                assert (await near.get("/v1/files")).status_code == 200

                key, _ = await app.state.runtime.authenticator.create("alice")
                auth = {"Authorization": f"Bearer {key}"}
                assert (await far.get("/v1/files")).status_code == 401
                assert (await far.get("/v1/files", headers=auth)).status_code == 200

    asyncio.run(main())


@pytest.fixture
def uvicorn_factory_server(tmp_path: Path) -> Iterator[str]:
    """``uvicorn --factory`` on a free loopback port, as an operator might run it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOADS_")}
    env.update(TEST_ENV, UPLOADS_DATA_DIR=str(tmp_path / "data"))
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "uploads_api.app:create_app_from_env",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.mark.e2e
def test_uvicorn_on_loopback_serves_an_open_server(uvicorn_factory_server: str) -> None:
    response = httpx.get(f"{uvicorn_factory_server}/v1/files", timeout=30)
    assert response.status_code == 200, response.text
