"""The intake tests' storage fixture and shortcuts: a PNG, the limits, bodies fed in chunks,
multipart intake run to its end, and what is left in storage afterwards.
A plugin of ``tests/conftest.py``: the fixture reaches every test module.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from tests.helpers import MULTIPART_TYPE
from uploads_api.db.models import NewFile
from uploads_api.ingest.limits import IngestLimits
from uploads_api.ingest.multipart import MultipartIntake
from uploads_api.ingest.policy import UploadPolicy
from uploads_api.storage.local import LocalStorage

PNG = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(3000)
MAX_FILE_SIZE = 8 * 1024 * 1024
LIMITS = IngestLimits(
    max_files=4,
    max_fields=4,
    max_field_size=1024,
    max_header_size=4096,
)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def stream(
    body: bytes, size: int, *, fail_at: int | None = None, error: BaseException | None = None
) -> AsyncIterator[bytes]:
    """The body in chunks of ``size``; with ``fail_at``, ``error`` is raised at that offset."""
    end = len(body) if fail_at is None else fail_at
    for offset in range(0, end, size):
        yield body[offset : min(offset + size, end)]
        await asyncio.sleep(0)
    if fail_at is not None:
        raise error or ClientDisconnect()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "blobs", tmp_path / "tmp")


def leftovers(storage: LocalStorage) -> list[Path]:
    """Every file in the temp dir and the blob root."""
    return sorted(
        p for root in (storage.temp_dir, storage.root) for p in root.rglob("*") if p.is_file()
    )


async def read_blob(storage: LocalStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key)])


def policy_of(max_file_size: int = MAX_FILE_SIZE, **overrides: Any) -> UploadPolicy:
    return UploadPolicy(max_file_size=max_file_size, **overrides)


def receive(
    storage: LocalStorage,
    body: bytes,
    size: int,
    limits: IngestLimits = LIMITS,
    policy: UploadPolicy | None = None,
    **kw: Any,
) -> list[NewFile]:
    intake = MultipartIntake(storage, limits, policy or policy_of())
    files: list[NewFile] = run(intake.receive(MULTIPART_TYPE, stream(body, size, **kw)))
    return files


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
