"""What one backend does beyond the shared suite: local files survive short writes and
offer their paths, ``file:`` URLs build local storage, and S3 aborts the multipart uploads
a killed process left pending."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from tests.service_fixtures import s3_client
from tests.storage_helpers import MiB, _local, new_id, put, read_all, run
from uploads_api.storage import LocalPaths
from uploads_api.storage.keys import original_key
from uploads_api.storage.local import LocalStorage
from uploads_api.storage.s3 import S3Storage


def test_short_writes_resume_where_they_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev

    def short_writev(fd: int, buffers: list[memoryview]) -> int:
        # The kernel may take less than asked: here at most 1000 bytes a call.
        taken, room = [], 1000
        for buffer in buffers:
            if room == 0:
                break
            taken.append(buffer[:room])
            room -= len(taken[-1])
        return real_writev(fd, taken)

    monkeypatch.setattr(os, "writev", short_writev)  # what LocalStorage writes with
    storage = _local(tmp_path).storage
    data = secrets.token_bytes(50_000)
    key = original_key(new_id())

    async def body() -> None:
        writer = await storage.open_writer(key)
        await writer.write(*(data[i : i + 3001] for i in range(0, len(data), 3001)))
        await writer.commit()
        assert await read_all(storage, key) == data

    run(body())


def test_local_storage_offers_local_paths(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs", tmp_path / "tmp")
    key = original_key(new_id())
    run(put(storage, key, b"on disk"))
    assert isinstance(storage, LocalPaths)
    assert storage.path_of(key).read_bytes() == b"on disk"
    assert storage.path_of(key).is_relative_to(tmp_path / "blobs")


def test_s3_aborts_uploads_a_killed_process_left_pending(s3_endpoint: str, s3_bucket: str) -> None:
    client = s3_client(s3_endpoint)
    storage = S3Storage(f"s3://{s3_bucket}/p", client=client)

    async def main() -> int:
        # A writer past its first part has a multipart upload open; then it is abandoned.
        writer = await storage.open_writer(original_key(new_id()))
        await writer.write(b"x" * (9 * MiB))
        assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
        # (The test server reports a fixed start date for every upload, so the age filter
        # itself cannot be exercised here.)
        pending = await storage.pending_uploads(time.time() + 1)
        for key, upload_id in pending:
            await storage.abort_upload(key, upload_id)
        return len(pending)

    assert run(main()) == 1
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [("file:///srv/blobs", "/srv/blobs"), ("file:rel/blobs", "rel/blobs"), ("/abs/b", "/abs/b")],
)
def test_local_storage_urls(tmp_path: Path, url: str, expected: str) -> None:
    from uploads_api.config import Settings
    from uploads_api.storage.factory import build_storage

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            LocalStorage, "__init__", lambda self, root, temp: setattr(self, "root", root)
        )
        storage = build_storage(Settings(storage_url=url), tmp_path, tmp_path / "tmp")
    assert isinstance(storage, LocalStorage)
    assert str(storage.root) == expected
