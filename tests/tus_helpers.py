"""The requests of a tus exchange, as the tus suites send them."""

from __future__ import annotations

import base64

import httpx

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


def metadata(**items: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in items.items())


def create(client: httpx.Client, length: int | None, **more: str) -> str:
    headers = {**TUS, **more}
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    answer = client.post("/v1/tus/", headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.headers["tus-resumable"] == "1.0.0"
    # A path: the client resolves it against the address it used.
    assert answer.headers["location"].startswith("/v1/tus/")
    return str(client.base_url.join(answer.headers["location"]))


def patch(client: httpx.Client, url: str, offset: int, data: bytes, **more: str) -> httpx.Response:
    return client.patch(url, content=data, headers={**CHUNK, "Upload-Offset": str(offset), **more})


def head(client: httpx.Client, url: str) -> httpx.Response:
    return client.head(url, headers=TUS)
