"""The ``Storage`` conformance suite: every backend (local files, S3) writes, reads, lists
and deletes blobs the same way, and refuses a bad key before touching anything."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tests.storage_helpers import (
    BAD_KEYS,
    Backend,
    MiB,
    _local,
    _s3,
    chunks_of,
    keys_under,
    new_id,
    put,
    read_all,
    run,
)
from uploads_api.storage import Storage
from uploads_api.storage.keys import original_key, thumbnail_key, thumbnail_prefix
from uploads_api.storage.local import READ_CHUNK


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "s3":
        return _s3(request)
    return _local(tmp_path)


@pytest.fixture
def storage(backend: Backend) -> Storage:
    return backend.storage


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


# Every backend refuses a bad key before touching anything.


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
