"""Helpers for the storage suites: the two backends as the conformance suite builds them,
writing and reading a blob in a few calls, and the keys every backend must refuse."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.service_fixtures import s3_client
from uploads_api.storage import Storage
from uploads_api.storage.local import LocalStorage
from uploads_api.storage.s3 import S3Storage

MiB = 1024 * 1024


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@dataclass
class Backend:
    storage: Storage
    # Whatever the backend keeps while a blob is being written (temp files, pending uploads).
    leftovers: Callable[[], list[str]]


def _local(tmp_path: Path) -> Backend:
    storage = LocalStorage(tmp_path / "blobs", tmp_path / "tmp")
    return Backend(storage, lambda: sorted(p.name for p in (tmp_path / "tmp").iterdir()))


def _s3(request: pytest.FixtureRequest) -> Backend:
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    client = s3_client(endpoint)
    storage = S3Storage(f"s3://{bucket}/some/prefix", client=client)

    def pending_uploads() -> list[str]:
        found = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(upload["Key"] for upload in found)

    return Backend(storage, pending_uploads)


def new_id() -> str:
    return secrets.token_hex(16)


async def put(storage: Storage, key: str, data: bytes, *, pieces: int = 1) -> None:
    writer = await storage.open_writer(key)
    step = max(1, -(-len(data) // pieces))
    for offset in range(0, len(data), step):
        await writer.write(data[offset : offset + step])
    await writer.commit()


async def chunks_of(
    storage: Storage, key: str, start: int = 0, end: int | None = None
) -> list[bytes]:
    return [chunk async for chunk in storage.read(key, start, end)]


async def read_all(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(await chunks_of(storage, key, start, end))


async def keys_under(storage: Storage, prefix: str) -> list[str]:
    return sorted([key async for key, _mtime in storage.list(prefix)])


# Keys that every backend, and validate_key, must refuse.

BAD_KEYS = [
    "../x",
    "/abs",
    "a/../b",
    "a/./b",
    "..",
    ".hidden",
    "A",
    "a//b",
    "a/",
    "",
    "a\x00b",
    "a\\b",
    "a b",
    "a\nb",
    "é",
    "a" * 513,
]
