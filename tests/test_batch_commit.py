"""The files of one multipart request committed together on local disk (``BatchCommit``):
each sealed (written and synced) as it ends, all named in one directory at the end; a
request refused part-way leaves nothing; a 201 survives a kill -9."""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, ServerFactory
from tests.helpers import (
    MULTIPART_TYPE,
    Part,
    assert_nothing_stored,
    assert_problem,
    blob_files,
    multipart,
    sha256,
)
from uploads_api.storage import BatchCommit, original_key
from uploads_api.storage.local import LocalStorage


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "blobs", tmp_path / "tmp")


def temp_files(storage: LocalStorage) -> list[Path]:
    return list(storage.temp_dir.iterdir())


def test_local_storage_offers_batch_commits(storage: LocalStorage) -> None:
    assert isinstance(storage, BatchCommit)


def test_sealed_blobs_are_invisible_until_the_batch_commits(storage: LocalStorage) -> None:
    blobs = {
        original_key("ab" + secrets.token_hex(15)): secrets.token_bytes(n) for n in (0, 9, 70_000)
    }

    async def body() -> None:
        writers = []
        for key, data in blobs.items():
            writer = await storage.open_writer(key)
            await storage.seal(writer, data[:5], data[5:])
            writers.append(writer)
        assert len(temp_files(storage)) == len(blobs)
        assert not any(storage.path_of(key).exists() for key in blobs)
        await storage.commit_batch(writers)

    run(body())
    for key, data in blobs.items():
        assert storage.path_of(key).read_bytes() == data
    assert temp_files(storage) == []


def test_a_batch_syncs_its_directory_once(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file synced as it is sealed; the directory they are named in once for all, and
    a directory made for them synced into its parent."""
    synced: list[tuple[int, int] | str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        synced.append(inode_of(os.fstat(fd)) if is_dir else "file")
        real_fsync(fd)

    async def batch(keys: list[str]) -> list[tuple[int, int] | str]:
        writers = []
        for key in keys:
            writer = await storage.open_writer(key)
            await storage.seal(writer, b"x" * 100)
            writers.append(writer)
        assert synced == ["file"] * len(keys)
        synced.clear()
        await storage.commit_batch(writers)
        committed = list(synced)
        synced.clear()
        return committed

    monkeypatch.setattr(os, "fsync", fsync)
    first = [original_key("cd" + secrets.token_hex(15)) for _ in range(5)]
    folder = storage.path_of(first[0]).parent
    # originals/ and originals/cd/ are new: each named in its parent, then the files.
    committed = run(batch(first))
    assert committed == [inode(path) for path in (storage.root, folder.parent, folder)]
    second = [original_key("cd" + secrets.token_hex(15)) for _ in range(3)]
    assert run(batch(second)) == [inode(folder)]
    assert all(storage.path_of(key).read_bytes() == b"x" * 100 for key in first + second)


def test_a_writer_not_sealed_is_sealed_by_the_batch(storage: LocalStorage) -> None:
    key = original_key(secrets.token_hex(16))

    async def body() -> None:
        writer = await storage.open_writer(key)
        await writer.write(b"written, never sealed")
        await storage.commit_batch([writer])
        await writer.commit()  # idempotent, as after a commit of its own
        await writer.abort()  # harmless once committed

    run(body())
    assert storage.path_of(key).read_bytes() == b"written, never sealed"


def test_an_aborted_sealed_writer_leaves_nothing(storage: LocalStorage) -> None:
    key = original_key(secrets.token_hex(16))

    async def body() -> None:
        writer = await storage.open_writer(key)
        await storage.seal(writer, b"sealed, then dropped")
        await writer.abort()

    run(body())
    assert temp_files(storage) == []
    assert not storage.path_of(key).exists()


def test_a_writer_of_another_backend_is_refused(storage: LocalStorage) -> None:
    class Elsewhere:
        async def write(self, *chunks: bytes | memoryview) -> None:
            pass

        async def commit(self) -> None:
            pass

        async def abort(self) -> None:
            pass

    with pytest.raises(TypeError):
        run(storage.commit_batch([Elsewhere()]))


# End to end -------------------------------------------------------------------------------------


def post(server: Server, body: bytes) -> httpx.Response:
    headers = {"Content-Type": MULTIPART_TYPE}
    return httpx.post(f"{server.url}/v1/files", content=body, headers=headers, timeout=60)


@pytest.mark.e2e
def test_a_request_lands_in_one_directory_and_survives_a_kill(server: Server) -> None:
    datas = [secrets.token_bytes(size) for size in [0, 1, 4096, 10_240, 300_000, 1_500_000] * 4]
    response = post(server, multipart(*(Part("file", d, f"f{i}.bin") for i, d in enumerate(datas))))
    assert response.status_code == 201, response.text
    files = response.json()["files"]
    assert [f["sha256"] for f in files] == [sha256(d) for d in datas]
    # One directory for the request: its ids share their first two digits.
    assert len({f["id"][:2] for f in files}) == 1
    assert len({path.parent for path in blob_files(server)}) == 1
    server.kill()  # no shutdown code runs: what the 201 promised must be there already
    server.start()
    assert server.temp_files() == []
    for item, data in zip(files, datas, strict=True):
        got = httpx.get(f"{server.url}/v1/files/{item['id']}/content", timeout=30)
        assert got.status_code == 200
        assert got.content == data


@pytest.mark.e2e
def test_a_request_refused_after_some_files_were_sealed_leaves_nothing(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(max_file_size=100_000)
    parts = [Part("file", secrets.token_bytes(50_000), f"ok{i}.bin") for i in range(12)]
    parts.append(Part("file", secrets.token_bytes(200_000), "too-large.bin"))
    response = post(server, multipart(*parts))
    assert_problem(response, 413, "file-too-large")
    assert response.json()["part"] == 12
    assert_nothing_stored(server)


def inode_of(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


def inode(path: Path) -> tuple[int, int]:
    return inode_of(path.stat())
