"""The bytes of unfinished resumable uploads, one local file each, appended in place.

A file may hold more than the upload's recorded offset (a crash between the fsync and the
offset's commit, a chunk refused by its checksum): every append first cuts it back to the
offset it starts at, so what the offset covers is always exactly what was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from uploads_api.storage.base import Storage
from uploads_api.storage.dirsync import fsync_dir, make_dirs
from uploads_api.storage.keys import validate_file_id
from uploads_api.storage.writeback import start_writeback

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

# Bytes gathered before one write: few thread hops, bounded memory.
WRITE_BATCH = 1024 * 1024
HASH_CHUNK = 1024 * 1024


class PastLimit(Exception):
    """The body went past what the upload may still take; nothing of this append is kept."""


class LeaseLapsed(Exception):
    """The writer's lease on the upload lapsed mid-body: another writer may own the bytes
    past the offset now, so this one stops at once and touches nothing more."""


@dataclass(frozen=True)
class Appended:
    written: int
    # The digest of what was written, when an algorithm was asked for.
    digest: bytes | None
    # Why the body ended early (the client went away, a stall): ``written`` bytes are kept
    # anyway, and the error is the request's answer once they are committed.
    cut_by: Exception | None = None


class BodyReader:
    """One append's body, at most ``limit`` bytes (past them: ``PastLimit``). A body that
    fails part-way (the client went away, a stall) just ends, its error kept in ``cut_by``,
    unless the chunk must be whole (a checksum was asked for): then the error is raised.
    Errors of the store itself, raised while the chunks are written, are never taken for
    the body's: only the body's own reads are caught here."""

    def __init__(self, body: AsyncIterator[bytes], limit: int, *, whole: bool) -> None:
        self._body = body
        self._limit = limit
        self._whole = whole
        self.cut_by: Exception | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        received = 0
        while True:
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                return
            except LeaseLapsed:
                raise
            except Exception as exc:
                if self._whole:
                    raise
                self.cut_by = exc
                return
            received += len(chunk)
            if received > self._limit:
                raise PastLimit(f"the body goes past the {self._limit} bytes still expected")
            yield chunk


@dataclass(frozen=True)
class Finished:
    """A complete upload's bytes: their hash (read back once, unless known) and their head,
    for sniffing."""

    sha256: str
    head: bytes


class PartialStore(Protocol):
    """Where an unfinished resumable upload's bytes wait: local files, or S3 parts."""

    async def create(self, upload_id: str) -> None:
        """Room for a new upload's bytes."""

    async def append(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        limit: int,
        algorithm: str | None = None,
        running: Hash | None = None,
    ) -> Appended:
        """Store ``body`` from ``offset`` (at most ``limit`` bytes), durably; ``running``,
        the hash of the bytes before ``offset``, goes on over those written."""

    async def discard_chunk(self, upload_id: str, offset: int) -> None:
        """Forget what the last append stored past ``offset`` (its checksum failed)."""

    async def join(
        self, upload_id: str, parts: list[tuple[str, int]], first: Hash | None = None
    ) -> Hash:
        """The upload's bytes: those of the complete uploads ``parts`` (id, length), in
        order; answers their sha256, going on from ``first`` (the first part's, if known)."""

    async def finish(self, upload_id: str, length: int, sha256: str | None = None) -> Finished:
        """The complete bytes' hash (read back once unless ``sha256`` is known) and head."""

    async def commit(self, upload_id: str, storage: Storage, key: str) -> None:
        """Put the finished bytes at ``key`` in ``storage``; the upload keeps its own until
        ``release``, so a failure to record the file loses nothing."""

    async def release(self, upload_id: str) -> None:
        """The upload became a file: drop what only the upload needed."""

    async def discard(self, upload_id: str) -> None:
        """The upload ends without a file: drop all of it."""


class LocalPartials:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, upload_id: str) -> Path:
        validate_file_id(upload_id)
        return self.root / upload_id[:2] / upload_id

    async def create(self, upload_id: str) -> None:
        path = self.path_of(upload_id)

        def make() -> None:
            # Named durably before any chunk is acknowledged: the bytes' fsync alone
            # does not sync the name.
            make_dirs(path.parent)
            path.touch()
            fsync_dir(path.parent)

        await asyncio.to_thread(make)

    async def append(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        limit: int,
        algorithm: str | None = None,
        running: Hash | None = None,
    ) -> Appended:
        """Write ``body`` at ``offset``, at most ``limit`` bytes, and fsync. Past the limit:
        ``PastLimit``. A body that fails part-way (the client went away, a stall) keeps
        what arrived when no checksum was asked for; otherwise nothing of it counts (the
        offset does not move, and the next append cuts the file back to it)."""
        path = self.path_of(upload_id)
        digest = hashlib.new(algorithm) if algorithm else None
        digests = [h for h in (digest, running) if h is not None]
        handle = await asyncio.to_thread(_open_at, path, offset)
        reader = BodyReader(body, limit, whole=digest is not None)
        written = 0
        batch: list[bytes] = []
        batched = 0
        # One batch is hashed and written in a thread while the next one arrives.
        pending: asyncio.Future[None] | None = None
        try:
            async for chunk in reader.chunks():
                batch.append(chunk)
                batched += len(chunk)
                if batched >= WRITE_BATCH:
                    if pending is not None:
                        await asyncio.shield(pending)
                    pending = asyncio.ensure_future(
                        asyncio.to_thread(_write, handle, batch, digests)
                    )
                    written += batched
                    batch, batched = [], 0
            if pending is not None:
                await asyncio.shield(pending)
            # The last batch and the fsync: one future too, which the cleanup can wait for.
            pending = asyncio.ensure_future(asyncio.to_thread(_last, handle, batch, digests))
            await asyncio.shield(pending)
            written += batched
        except BaseException:
            # Bytes past the offset stay for the next append to cut back (it holds the
            # lease then; this one may have lost it). A thread still writing must be done
            # with the file before it is closed.
            if pending is not None:
                await asyncio.wait([pending])
                if not pending.cancelled():
                    pending.exception()  # the error that matters is the one raised here
            raise
        finally:
            await asyncio.to_thread(handle.close)
        return Appended(written, digest.digest() if digest else None, reader.cut_by)

    async def join(
        self, upload_id: str, parts: list[tuple[str, int]], first: Hash | None = None
    ) -> Hash:
        """The upload's bytes: those of ``parts``, one after the other, fsynced. The kernel
        copies them; meanwhile another thread hashes them from the page cache (all but the
        first part when its hash is known)."""
        target = self.path_of(upload_id)
        sources = [(self.path_of(part), length) for part, length in parts]
        running = first if first is not None else hashlib.sha256()
        to_hash = sources[1:] if first is not None else sources
        await asyncio.gather(
            asyncio.to_thread(_join, target, sources),
            asyncio.to_thread(_hash_files, running, to_hash),
        )
        return running

    async def discard_chunk(self, upload_id: str, offset: int) -> None:
        await asyncio.to_thread(os.truncate, self.path_of(upload_id), offset)

    async def finish(self, upload_id: str, length: int, sha256: str | None = None) -> Finished:
        path = self.path_of(upload_id)
        if sha256 is not None:
            return Finished(sha256, await asyncio.to_thread(_head, path, length))
        return await asyncio.to_thread(_read_back, path, length)

    async def commit(self, upload_id: str, storage: Storage, key: str) -> None:
        # A second name for the bytes, for storage to take (move, or upload and remove).
        path = self.path_of(upload_id)
        link = path.with_name(path.name + ".commit")

        def make_link() -> None:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            os.link(path, link)

        await asyncio.to_thread(make_link)
        await storage.put_file(key, link)

    async def release(self, upload_id: str) -> None:
        await self.discard(upload_id)

    async def discard(self, upload_id: str) -> None:
        path = self.path_of(upload_id)

        def remove() -> None:
            for name in (path, path.with_name(path.name + ".commit")):
                with contextlib.suppress(FileNotFoundError):
                    name.unlink()

        await asyncio.to_thread(remove)


def _open_at(path: Path, offset: int) -> BinaryIO:
    # Unbuffered: every write is in the file before the fsync, with nothing left behind.
    handle = open(path, "r+b", buffering=0)  # noqa: SIM115 - closed by the caller
    if os.fstat(handle.fileno()).st_size > offset:
        handle.truncate(offset)
    handle.seek(offset)
    return handle


def _write(handle: BinaryIO, batch: list[bytes], digests: list[Hash]) -> None:
    """Hash and write one batch, in one thread hop: the event loop receives the next batch
    meanwhile, which is what the two cores have room for."""
    start = handle.tell()
    for chunk in batch:
        for digest in digests:
            digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[handle.write(view) or 0 :]
    start_writeback(handle.fileno(), start, handle.tell() - start)


def _last(handle: BinaryIO, batch: list[bytes], digests: list[Hash]) -> None:
    if batch:
        _write(handle, batch, digests)
    os.fsync(handle.fileno())


def _join(target: Path, sources: Sequence[tuple[Path, int]]) -> None:
    with open(target, "r+b") as out:
        out.truncate(0)
        for source, length in sources:
            with open(source, "rb") as part:
                copied = 0
                while copied < length:
                    step = os.copy_file_range(part.fileno(), out.fileno(), length - copied)
                    if step == 0:
                        raise OSError(f"{source} holds fewer than its {length} bytes")
                    copied += step
        os.fsync(out.fileno())


def _hash_files(running: Hash, sources: Sequence[tuple[Path, int]]) -> None:
    for source, length in sources:
        with open(source, "rb", buffering=0) as part:
            left = length
            while left > 0:
                chunk = part.read(min(HASH_CHUNK, left))
                if not chunk:
                    raise OSError(f"{source} holds fewer than its {length} bytes")
                running.update(chunk)
                left -= len(chunk)


def _head(path: Path, length: int) -> bytes:
    """The first bytes, for sniffing: never any past the upload's length."""
    with open(path, "rb") as handle:
        return handle.read(min(4096, length))


def _read_back(path: Path, length: int) -> Finished:
    sha = hashlib.sha256()
    _hash_files(sha, [(path, length)])
    return Finished(sha.hexdigest(), _head(path, length))
