"""The ``Storage`` conformance suite, run against every backend, and the storage keys."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.service_fixtures import s3_client
from uploads_api.storage import LocalPaths, Storage
from uploads_api.storage.keys import (
    file_id_of,
    original_key,
    thumbnail_key,
    thumbnail_prefix,
    validate_file_id,
    validate_key,
)
from uploads_api.storage.local import READ_CHUNK, LocalStorage
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


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "s3":
        return _s3(request)
    return _local(tmp_path)


@pytest.fixture
def storage(backend: Backend) -> Storage:
    return backend.storage


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


# Writers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pieces", [1, 3, 100])
def test_committed_blob_has_the_exact_bytes(storage: Storage, pieces: int) -> None:
    data = secrets.token_bytes(10_000)
    key = original_key(new_id())

    async def body() -> None:
        await put(storage, key, data, pieces=pieces)
        assert await storage.size(key) == len(data)
        assert await read_all(storage, key) == data

    run(body())


def test_many_chunks_in_one_write_keep_their_order(storage: Storage) -> None:
    # More pieces than one writev takes (IOV_MAX, 1024 on Linux), some of them empty views.
    data = secrets.token_bytes(3000 * 7)
    view = memoryview(data)
    chunks: list[bytes | memoryview] = [view[i : i + 7] for i in range(0, len(data), 7)]
    chunks[5:5] = [view[0:0], b""]
    key = original_key(new_id())

    async def body() -> None:
        writer = await storage.open_writer(key)
        await writer.write(*chunks)
        await writer.write(b"tail")
        await writer.commit()
        assert await read_all(storage, key) == data + b"tail"

    run(body())


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


def test_empty_blob(storage: Storage) -> None:
    key = original_key(new_id())

    async def body() -> None:
        await put(storage, key, b"")
        assert await storage.size(key) == 0
        assert await read_all(storage, key) == b""

    run(body())


def test_nothing_is_visible_before_commit(backend: Backend) -> None:
    storage = backend.storage
    file_id = new_id()
    key = original_key(file_id)

    async def body() -> None:
        writer = await storage.open_writer(key)
        await writer.write(b"x" * 1000)
        assert await storage.size(key) is None
        assert await keys_under(storage, "originals") == []
        await writer.commit()
        assert await storage.size(key) == 1000
        assert await keys_under(storage, "originals") == [key]
        assert backend.leftovers() == []

    run(body())


@pytest.mark.parametrize("written", [b"", b"partial data", secrets.token_bytes(3 * MiB)])
@pytest.mark.parametrize("aborts", [1, 2])
def test_abort_leaves_nothing(backend: Backend, written: bytes, aborts: int) -> None:
    storage = backend.storage
    key = original_key(new_id())

    async def body() -> None:
        writer = await storage.open_writer(key)
        if written:
            await writer.write(written)
        for _ in range(aborts):
            await writer.abort()
        # A commit after an abort may raise or do nothing, but must not publish anything.
        with contextlib.suppress(Exception):
            await writer.commit()
        assert await storage.size(key) is None
        assert await keys_under(storage, "originals") == []
        assert backend.leftovers() == []

    run(body())


def test_commit_is_idempotent_and_abort_after_commit_is_harmless(backend: Backend) -> None:
    storage = backend.storage
    key = original_key(new_id())

    async def body() -> None:
        writer = await storage.open_writer(key)
        await writer.write(b"kept")
        await writer.commit()
        await writer.commit()
        await writer.abort()
        assert await read_all(storage, key) == b"kept"
        assert backend.leftovers() == []

    run(body())


def test_replacing_an_existing_key(backend: Backend) -> None:
    storage = backend.storage
    key = original_key(new_id())

    async def body() -> None:
        await put(storage, key, b"first version, longer")
        writer = await storage.open_writer(key)
        await writer.write(b"second")
        # The old blob stays whole until the new one is committed.
        assert await read_all(storage, key) == b"first version, longer"
        await writer.commit()
        assert await read_all(storage, key) == b"second"
        assert await storage.size(key) == len(b"second")
        assert await keys_under(storage, "originals") == [key]
        assert backend.leftovers() == []

    run(body())


def test_aborted_replacement_keeps_the_old_blob(storage: Storage) -> None:
    key = original_key(new_id())

    async def body() -> None:
        await put(storage, key, b"old")
        writer = await storage.open_writer(key)
        await writer.write(b"new")
        await writer.abort()
        assert await read_all(storage, key) == b"old"

    run(body())


def test_concurrent_writers_to_different_keys(storage: Storage) -> None:
    blobs = {original_key(new_id()): secrets.token_bytes(50_000) for _ in range(8)}

    async def body() -> None:
        await asyncio.gather(*(put(storage, key, data, pieces=7) for key, data in blobs.items()))
        for key, data in blobs.items():
            assert await read_all(storage, key) == data

    run(body())


# Reads ---------------------------------------------------------------------------------------

BIG_SIZE = 3 * MiB + 17
BIG = secrets.token_bytes(BIG_SIZE)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (0, BIG_SIZE),
        (0, 1),
        (5, None),
        (5, 6),
        (10, 10),
        (BIG_SIZE - 1, None),
        (BIG_SIZE, None),
        (BIG_SIZE, BIG_SIZE),
        (READ_CHUNK - 1, READ_CHUNK + 1),
        (MiB, 2 * MiB + 3),
        (0, BIG_SIZE + 1000),
    ],
)
def test_read_ranges(storage: Storage, start: int, end: int | None) -> None:
    key = original_key(new_id())

    async def body() -> None:
        await put(storage, key, BIG, pieces=4)
        chunks = await chunks_of(storage, key, start, end)
        assert b"".join(chunks) == BIG[start:end]
        assert all(chunks), "no empty chunks"

    run(body())


def test_large_reads_are_streamed_in_chunks(storage: Storage) -> None:
    key = original_key(new_id())

    async def body() -> None:
        await put(storage, key, BIG)
        chunks = await chunks_of(storage, key)
        assert len(chunks) > 1
        assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(BIG).digest()

    run(body())


def test_size_of_a_missing_blob_is_none(storage: Storage) -> None:
    assert run(storage.size(original_key(new_id()))) is None


# Deletion and listing --------------------------------------------------------------------------


def test_delete(storage: Storage) -> None:
    key = original_key(new_id())

    async def body() -> None:
        await put(storage, key, b"bytes")
        await storage.delete(key)
        assert await storage.size(key) is None
        await storage.delete(key)  # a missing blob is not an error
        await storage.delete(original_key(new_id()))

    run(body())


def test_delete_prefix_removes_everything_under_it_and_nothing_else(storage: Storage) -> None:
    doomed, kept = new_id(), new_id()
    # Same first characters as the doomed prefix: "under prefix/" must respect the slash.
    lookalike = f"{thumbnail_prefix(doomed)}0"
    doomed_keys = [thumbnail_key(doomed, size, "webp") for size in (256, 1024)]
    kept_keys = [thumbnail_key(kept, 256, "webp"), f"{lookalike}/256.webp", original_key(doomed)]

    async def body() -> None:
        for key in doomed_keys + kept_keys:
            await put(storage, key, key.encode())
        await storage.delete_prefix(thumbnail_prefix(doomed))
        for key in doomed_keys:
            assert await storage.size(key) is None
        for key in kept_keys:
            assert await read_all(storage, key) == key.encode()
        await storage.delete_prefix(thumbnail_prefix(doomed))  # already gone: fine
        await storage.delete_prefix(thumbnail_prefix(new_id()))

    run(body())


def test_list_yields_every_blob_under_a_prefix_with_its_mtime(storage: Storage) -> None:
    ids = [new_id() for _ in range(5)]
    originals = [original_key(i) for i in ids]
    thumbnails = [thumbnail_key(i, 256, "webp") for i in ids[:2]]

    async def body() -> None:
        before = time.time()
        for key in originals + thumbnails:
            await put(storage, key, b"x")
        after = time.time()
        listed = [item async for item in storage.list("originals")]
        assert sorted(key for key, _ in listed) == sorted(originals)
        # A little slack: file systems round timestamps.
        assert all(before - 2 <= mtime <= after + 2 for _, mtime in listed)
        assert await keys_under(storage, "thumbnails") == sorted(thumbnails)
        assert await keys_under(storage, thumbnail_prefix(ids[0])) == [thumbnails[0]]
        assert await keys_under(storage, "nothing-here") == []

    run(body())


# Local files in and out ------------------------------------------------------------------------


def test_put_file_stores_a_local_file(storage: Storage, tmp_path: Path) -> None:
    data = secrets.token_bytes(2 * MiB + 5)
    source = tmp_path / "made-elsewhere.bin"
    source.write_bytes(data)
    key = thumbnail_key(new_id(), 256, "webp")

    async def body() -> None:
        await storage.put_file(key, source)
        assert await storage.size(key) == len(data)
        assert await read_all(storage, key) == data
        replacement = tmp_path / "replacement.bin"
        replacement.write_bytes(b"smaller")
        await storage.put_file(key, replacement)
        assert await read_all(storage, key) == b"smaller"

    run(body())


def test_fetch_copies_the_blob_to_a_path(storage: Storage, tmp_path: Path) -> None:
    data = secrets.token_bytes(MiB + 1)
    key = original_key(new_id())
    destination = tmp_path / "fetched.bin"

    async def body() -> None:
        await put(storage, key, data)
        await storage.fetch(key, destination)
        assert destination.read_bytes() == data
        destination.write_bytes(b"changed locally")
        assert await read_all(storage, key) == data, "a copy, not the blob itself"

    run(body())


def test_check_passes_and_leaves_nothing_behind(backend: Backend) -> None:
    run(backend.storage.check())
    assert backend.leftovers() == []


def test_local_storage_offers_local_paths(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs", tmp_path / "tmp")
    key = original_key(new_id())
    run(put(storage, key, b"on disk"))
    assert isinstance(storage, LocalPaths)
    assert storage.path_of(key).read_bytes() == b"on disk"
    assert storage.path_of(key).is_relative_to(tmp_path / "blobs")


# Every backend refuses a bad key before touching anything.

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


def _operations(key: str, tmp_path: Path) -> list[Callable[[Storage], Coroutine[Any, Any, Any]]]:
    source = tmp_path / "source"
    source.write_bytes(b"source")

    async def read(storage: Storage) -> None:
        await read_all(storage, key)

    async def listing(storage: Storage) -> None:
        await keys_under(storage, key)

    return [
        lambda s: s.open_writer(key),
        lambda s: s.put_file(key, source),
        lambda s: s.fetch(key, tmp_path / "destination"),
        read,
        lambda s: s.size(key),
        lambda s: s.delete(key),
        lambda s: s.delete_prefix(key),
        listing,
    ]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_backends_refuse_bad_keys(backend: Backend, key: str, tmp_path: Path) -> None:
    outside = tmp_path / "x"
    outside.write_bytes(b"must survive")
    for operation in _operations(key, tmp_path):
        with pytest.raises(ValueError, match="invalid storage key"):
            run(operation(backend.storage))
    assert outside.read_bytes() == b"must survive"
    assert (tmp_path / "source").exists()
    assert not (tmp_path / "destination").exists()
    assert backend.leftovers() == []


# Keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS)
def test_validate_key_rejects(key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        validate_key(key)


@pytest.mark.parametrize(
    "key",
    ["a", "0", "a.b-c_d/0", "originals/ab/" + "ab" * 16, "thumbnails/ab/x/256.webp", "a" * 512],
)
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("check", "value"),
    [(validate_key, "originals/ab/cd\n"), (validate_file_id, "ab" * 16 + "\n")],
    ids=["key", "file-id"],
)
def test_a_trailing_newline_is_rejected(check: Callable[[str], str], value: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        check(value)


def test_key_builders_round_trip() -> None:
    file_id = new_id()
    original = original_key(file_id)
    assert original == f"originals/{file_id[:2]}/{file_id}"
    assert validate_key(original) == original
    assert file_id_of(original) == file_id
    for size, extension in [(256, "webp"), (1024, "jpg"), (64, "png")]:
        thumb = thumbnail_key(file_id, size, extension)
        assert thumb == f"{thumbnail_prefix(file_id)}/{size}.{extension}"
        assert thumb.startswith(f"thumbnails/{file_id[:2]}/{file_id}/")
        assert file_id_of(thumb) == file_id
    assert file_id_of(thumbnail_prefix(file_id)) == file_id


@pytest.mark.parametrize(
    "key",
    ["originals", "originals/ab", "tmp/ab/" + "ab" * 16, "originals/ab/" + "AB" * 16, "x/y/z"],
)
def test_file_id_of_other_keys_is_none(key: str) -> None:
    assert file_id_of(key) is None


@pytest.mark.parametrize("file_id", ["ab" * 16, "0" * 32, "0123456789abcdef" * 2])
def test_validate_file_id_accepts(file_id: str) -> None:
    assert validate_file_id(file_id) == file_id


@pytest.mark.parametrize(
    "file_id", ["", "ab" * 15, "ab" * 17, "AB" * 16, "g" * 32, "../" + "a" * 29, "ab" * 15 + "/x"]
)
def test_validate_file_id_rejects(file_id: str) -> None:
    with pytest.raises(ValueError, match="invalid file id"):
        validate_file_id(file_id)
    with pytest.raises(ValueError, match="invalid file id"):
        original_key(file_id)
    with pytest.raises(ValueError, match="invalid file id"):
        thumbnail_key(file_id, 256, "webp")


@pytest.mark.parametrize("extension", ["../x", "WEBP", "we bp", "x\\y"])
def test_thumbnail_key_refuses_odd_extensions(extension: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        thumbnail_key(new_id(), 256, extension)


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
        return await storage.abort_pending(time.time() + 1)

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
