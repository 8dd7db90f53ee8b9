"""The requests of a tus exchange, as the tus suites send them, and ``tus_server``: a
server keeping unfinished uploads on local disk, then one keeping them as S3 parts."""

from __future__ import annotations

import base64
import secrets

import httpx
import pytest

from tests.cluster import AWS_ENV
from tests.conftest import Server, ServerFactory
from tests.service_fixtures import s3_client

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


@pytest.fixture(scope="module", params=["local", "s3"])
def tus_server(request: pytest.FixtureRequest, module_server_factory: ServerFactory) -> Server:
    """The same protocol whether the bytes wait on local disk or as S3 parts."""
    if request.param == "local":
        return module_server_factory(max_file_size=64 * 1024 * 1024)
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"tus-{secrets.token_hex(6)}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    server = module_server_factory(
        extra_env=AWS_ENV,
        max_file_size=64 * 1024 * 1024,
        storage_url=f"s3://{bucket}/tus",
        s3_endpoint_url=endpoint,
    )
    server.bucket = bucket  # type: ignore[attr-defined]
    return server
