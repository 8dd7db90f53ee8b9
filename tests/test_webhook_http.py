"""aiohttp (about 9 MiB) stays out of the server until it sends a webhook: a real server
that stored a file with no endpoint to tell has not loaded it, and once it delivers to a
receiver on loopback, it has."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, ServerFactory
from tests.webhook_receiver import receiver

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(sys.platform != "linux", reason="reads the server's /proc/<pid>/maps"),
]


def loads_aiohttp(server: Server) -> bool:
    assert server.process is not None
    return "/aiohttp/" in Path(f"/proc/{server.process.pid}/maps").read_text()


def store(http: httpx.Client, name: str) -> None:
    answer = http.post("/v1/files", files={"file": (name, b"hello", "text/plain")})
    assert answer.status_code == 201, answer.text


def test_aiohttp_is_loaded_with_the_first_delivery(server_factory: ServerFactory) -> None:
    server = server_factory(webhook_allow_private="true")
    with receiver() as hook, httpx.Client(base_url=server.url, timeout=30) as http:
        store(http, "before.txt")
        assert not loads_aiohttp(server)
        endpoint = http.post("/v1/webhooks", json={"url": hook.url})
        assert endpoint.status_code == 201, endpoint.text
        hook.secret = endpoint.json()["secret"]
        store(http, "after.txt")
        delivered = hook.wait_for(1)
        assert delivered[0].verified
        assert loads_aiohttp(server)
