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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from uploads_api.storage.base import Storage
from uploads_api.storage.keys import validate_file_id

# Bytes gathered before one write: few thread hops, bounded memory.
WRITE_BATCH = 1024 * 1024
HASH_CHUNK = 1024 * 1024


class PastLimit(Exception):
    """The body went past what the upload may still take; nothing of this append is kept."""


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
    """A complete upload's bytes, read back once: their hash and their head, for sniffing."""

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
    ) -> Appended:
        """Store ``body`` from ``offset`` (at most ``limit`` bytes), durably."""

    async def discard_chunk(self, upload_id: str, offset: int) -> None:
        """Forget what the last append stored past ``offset`` (its checksum failed)."""

    async def join(self, upload_id: str, parts: list[tuple[str, int]]) -> None:
        """The upload's bytes: those of the complete uploads ``parts`` (id, length), in
        order."""

    async def finish(self, upload_id: str, length: int) -> Finished:
        """The complete bytes, read back once: their hash and head."""

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
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

        await asyncio.to_thread(make)

    async def append(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        limit: int,
        algorithm: str | None = None,
    ) -> Appended:
        """Write ``body`` at ``offset``, at most ``limit`` bytes, and fsync. Past the limit:
        ``PastLimit``, the file cut back to ``offset``. A body that fails part-way (the
        client went away, a stall) keeps what arrived when no checksum was asked for."""
        path = self.path_of(upload_id)
        digest = hashlib.new(algorithm) if algorithm else None
        handle = await asyncio.to_thread(_open_at, path, offset)
        reader = BodyReader(body, limit, whole=digest is not None)
        written = 0
        batch: list[bytes] = []
        batched = 0
        try:
            async for chunk in reader.chunks():
                batch.append(chunk)
                batched += len(chunk)
                if batched >= WRITE_BATCH:
                    await asyncio.to_thread(_write, handle, batch, digest)
                    written += batched
                    batch, batched = [], 0
            if batch:
                await asyncio.to_thread(_write, handle, batch, digest)
                written += batched
            await asyncio.to_thread(os.fsync, handle.fileno())
        except BaseException:
            await asyncio.to_thread(_cut, handle, offset)
            raise
        finally:
            await asyncio.to_thread(handle.close)
        return Appended(written, digest.digest() if digest else None, reader.cut_by)

    async def join(self, upload_id: str, parts: list[tuple[str, int]]) -> None:
        """The upload's bytes: those of ``parts``, one after the other, fsynced (the kernel
        copies them, never this process)."""
        target = self.path_of(upload_id)
        sources = [self.path_of(part) for part, _length in parts]
        await asyncio.to_thread(_join, target, sources)

    async def discard_chunk(self, upload_id: str, offset: int) -> None:
        await asyncio.to_thread(os.truncate, self.path_of(upload_id), offset)

    async def finish(self, upload_id: str, length: int) -> Finished:
        return await asyncio.to_thread(_read_back, self.path_of(upload_id))

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
    handle.truncate(offset)
    handle.seek(offset)
    return handle


def _write(handle: BinaryIO, batch: list[bytes], digest: hashlib._Hash | None) -> None:
    for chunk in batch:
        if digest is not None:
            digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[handle.write(view) or 0 :]


def _cut(handle: BinaryIO, offset: int) -> None:
    handle.truncate(offset)


def _join(target: Path, sources: list[Path]) -> None:
    with open(target, "r+b") as out:
        out.truncate(0)
        for source in sources:
            with open(source, "rb") as part:
                size = os.fstat(part.fileno()).st_size
                copied = 0
                while copied < size:
                    copied += os.copy_file_range(part.fileno(), out.fileno(), size - copied)
        os.fsync(out.fileno())


def _read_back(path: Path) -> Finished:
    sha = hashlib.sha256()
    head = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            if not head:
                head = chunk[:4096]
            sha.update(chunk)
    return Finished(sha.hexdigest(), head)
