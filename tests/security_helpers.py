"""Helpers shared by the security tests of hostile files: the server that stores them and
a client for it, uploads sent as a PNG whatever they are, small images saved by Pillow, and a
check that no thumbnail was made.
A plugin of ``tests/conftest.py``: the two fixtures reach every test module.
"""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest

from tests import imagegen
from tests.conftest import Server
from tests.helpers import thumbnail_dir


@pytest.fixture(scope="module")
def accepting(shared_server: Server) -> Server:
    """Hostile files that are stored, and must be made harmless."""
    return shared_server


@pytest.fixture
def http(shared_client: httpx.Client) -> httpx.Client:
    return shared_client


def assert_no_thumbnail(server: Server, client: httpx.Client, record: dict[str, Any]) -> None:
    assert record["thumbnails"] == []
    assert client.get(f"/v1/files/{record['id']}/thumbnails/256").status_code == 404
    assert not thumbnail_dir(server, record["id"]).exists()


def pillow_bytes(fmt: str, **params: Any) -> bytes:
    """A small gradient, saved by Pillow in this format."""
    out = io.BytesIO()
    imagegen.gradient((32, 24)).save(out, fmt, **params)
    return out.getvalue()


def upload_as_png(http: httpx.Client, data: bytes, name: str = "picture.png") -> dict[str, Any]:
    response = http.post("/v1/files", files={"file": (name, data, "image/png")})
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()["files"][0]
    return record
