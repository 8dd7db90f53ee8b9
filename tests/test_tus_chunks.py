"""A chunk's way onto local disk, below the HTTP layer: the running hash kept per upload
and offset, an append whose writer's lease lapsed mid-body, and the bytes a refused append
leaves for the next one to cut back."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from uploads_api.services.tus_hashes import RunningHashes
from uploads_api.storage.partials import LeaseLapsed, LocalPartials, PastLimit


async def _body(*chunks: bytes, then: Exception | None = None) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    if then is not None:
        raise then


def test_a_hash_is_only_resumed_at_the_offset_it_covers() -> None:
    hashes = RunningHashes(capacity=2)
    first = hashes.resume("a", 0)
    assert first is not None
    first.update(b"abc")
    hashes.keep("a", 3, first)
    assert hashes.resume("a", 2) is None
    resumed = hashes.resume("a", 3)
    assert resumed is not None
    resumed.update(b"REFUSED")  # a copy: the kept hash still covers b"abc" alone
    assert hashes.take("a", 3) == hashlib.sha256(b"abc").hexdigest()
    assert hashes.take("a", 3) is None  # taken once
    hashes.keep("b", 1, hashlib.sha256(b"b"))
    hashes.keep("c", 1, hashlib.sha256(b"c"))
    hashes.keep("d", 1, hashlib.sha256(b"d"))
    assert hashes.resume("b", 1) is None  # the least recently kept went first
    assert hashes.take("d", 1) == hashlib.sha256(b"d").hexdigest()
    hashes.keep("c", 1, None)  # an append this process could not hash
    assert hashes.take("c", 1) is None


def test_an_append_whose_lease_lapsed_leaves_the_file_alone(tmp_path: Path) -> None:
    """Once the lease lapsed, another writer may own the bytes past the offset: the lapsed
    one stops at once, cuts nothing and writes nothing more."""
    partials = LocalPartials(tmp_path)
    upload_id = secrets.token_hex(16)
    path = partials.path_of(upload_id)

    async def stalled_then_lapsed() -> AsyncIterator[bytes]:
        yield b"x" * 10
        # Meanwhile the lease lapsed, and the writer that took over committed its chunk.
        with path.open("r+b") as other:
            other.seek(10)
            other.write(b"TAKEN OVER")
        raise LeaseLapsed("lapsed")

    async def scenario() -> None:
        await partials.create(upload_id)
        await partials.append(upload_id, 0, _body(b"0123456789"), 100)
        with pytest.raises(LeaseLapsed):
            await partials.append(upload_id, 10, stalled_then_lapsed(), 100)

    asyncio.run(scenario())
    assert path.read_bytes() == b"0123456789TAKEN OVER"


def test_a_refused_append_counts_for_nothing_and_the_next_one_cuts_it_back(
    tmp_path: Path,
) -> None:
    partials = LocalPartials(tmp_path)
    upload_id = secrets.token_hex(16)
    big = b"y" * (3 * 1024 * 1024)  # several batches, written before the refusal

    async def scenario() -> bytes:
        await partials.create(upload_id)
        await partials.append(upload_id, 0, _body(b"head"), 10**9)
        with pytest.raises(PastLimit):
            await partials.append(upload_id, 4, _body(big, big), len(big) + 1)
        running = hashlib.sha256(b"head")
        appended = await partials.append(upload_id, 4, _body(b"tail"), 100, "sha1", running)
        assert appended.digest == hashlib.sha1(b"tail").digest()
        assert running.hexdigest() == hashlib.sha256(b"headtail").hexdigest()
        return partials.path_of(upload_id).read_bytes()

    assert asyncio.run(scenario()) == b"headtail"


def test_a_body_cut_off_keeps_what_arrived_in_the_hash_too(tmp_path: Path) -> None:
    partials = LocalPartials(tmp_path)
    upload_id = secrets.token_hex(16)
    piece = b"z" * (1024 * 1024 + 5)

    async def scenario() -> None:
        await partials.create(upload_id)
        running = hashlib.sha256()
        gone = ConnectionResetError("the client went away")
        appended = await partials.append(
            upload_id, 0, _body(piece, b"!", then=gone), 10**9, None, running
        )
        assert appended.written == len(piece) + 1 and appended.cut_by is gone
        assert running.hexdigest() == hashlib.sha256(piece + b"!").hexdigest()
        finished = await partials.finish(upload_id, appended.written, running.hexdigest())
        assert finished.head == piece[:4096]

    asyncio.run(scenario())


def test_a_new_upload_is_named_durably_before_any_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file and the directories on its way are synced into their parents at creation:
    a chunk's own fsync later makes its bytes durable, not the file's name."""
    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(inode(os.fstat(fd)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    partials = LocalPartials(tmp_path / "tus")
    upload_id = secrets.token_hex(16)
    asyncio.run(partials.create(upload_id))
    folder = partials.path_of(upload_id).parent
    assert synced == [inode(path.stat()) for path in (tmp_path, folder.parent, folder)]
    assert partials.path_of(upload_id).exists()


def inode(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino
