"""Local-disk storage: blobs are files under ``<data dir>/blobs``, written through a temp file
in ``<data dir>/tmp`` that is fsynced and atomically renamed into place."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import aiofiles
import aiofiles.os

from uploads_api.storage.base import BlobWriter, Buffer
from uploads_api.storage.dirsync import fsync_dir, make_dirs
from uploads_api.storage.keys import validate_key
from uploads_api.storage.tempnames import temp_name
from uploads_api.storage.writeback import start_writeback

READ_CHUNK = 1024 * 1024
WRITEBACK_STEP = 16 * 1024 * 1024
_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024)


class LocalBlobWriter:
    """Writes through a raw file descriptor in a worker thread: no second buffer, and the
    GIL is released for the whole write. The temp file is created by the first write, in
    its thread: a small file costs one thread hop for all of it (``LocalStorage.seal``)."""

    def __init__(self, final_path: Path, temp_path: Path) -> None:
        self._final = final_path
        self._temp = temp_path
        self._fd = -1
        self._created = False
        self._written = 0
        self._flushed = 0  # bytes handed to the kernel for writeback so far
        self._sealed = False
        self._done = False

    @property
    def final_path(self) -> Path:
        return self._final

    async def write(self, *chunks: Buffer) -> None:
        await asyncio.to_thread(self._write, chunks)

    def _open(self) -> int:
        if self._fd < 0:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            self._fd = os.open(self._temp, flags, 0o666)
            self._created = True
        return self._fd

    def _write(self, chunks: tuple[Buffer, ...]) -> None:
        fd = self._open()
        views = [memoryview(chunk) for chunk in chunks if len(chunk)]
        first = 0
        while first < len(views):
            # One system call for up to IOV_MAX pieces; a short write resumes mid-piece.
            written = os.writev(fd, views[first : first + _IOV_MAX])
            self._written += written
            while first < len(views) and written >= len(views[first]):
                written -= len(views[first])
                first += 1
            if written:
                views[first] = views[first][written:]
        if self._written - self._flushed >= WRITEBACK_STEP:
            # What is already here goes to disk meanwhile: the fsync at commit has little
            # left to do.
            start_writeback(fd, self._flushed, self._written - self._flushed)
            self._flushed = self._written

    def _seal(self, last: tuple[Buffer, ...] = ()) -> None:
        """The last chunks, then the file's own fsync: its bytes are durable, not yet named."""
        if self._sealed:
            return
        self._write(last)
        os.fsync(self._fd)
        self._close()
        self._sealed = True

    async def commit(self) -> None:
        if self._done:
            return
        await _finish_in_thread(self._commit)

    def _commit(self) -> None:
        # fsync before rename: after a crash the blob is either whole at its key or absent.
        self._seal()
        self._move_into_place()
        fsync_dir(self._final.parent)

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _move_into_place(self) -> None:
        make_dirs(self._final.parent)
        os.replace(self._temp, self._final)
        self._done = True

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._close()
        finally:
            if self._created:
                await asyncio.to_thread(self._temp.unlink, True)


async def _finish_in_thread(work: Callable[[], None]) -> None:
    """One thread hop; if the caller is cancelled meanwhile, the work is let finish, so
    ``abort`` never closes a descriptor under it."""
    job = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait([job])
        raise


def _local(writer: BlobWriter) -> LocalBlobWriter:
    if not isinstance(writer, LocalBlobWriter):
        raise TypeError(f"not a local blob writer: {writer!r}")
    return writer


def _move_all(writers: Sequence[LocalBlobWriter]) -> None:
    """Name every blob (sealing any not sealed yet), then sync each directory that gained
    a name, once."""
    for writer in writers:
        writer._seal()
        writer._move_into_place()
    for directory in dict.fromkeys(writer.final_path.parent for writer in writers):
        fsync_dir(directory)


class LocalStorage:
    """Blobs as files. Also offers ``path_of`` (the ``LocalPaths`` power) for zero-copy
    reads, and ``seal`` and ``commit_batch`` (``BatchCommit``): a request's blobs named
    together, with one directory sync for all."""

    def __init__(self, root: Path, temp_dir: Path) -> None:
        self.root = root
        self.temp_dir = temp_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        return self.root / validate_key(key)

    async def open_writer(self, key: str) -> LocalBlobWriter:
        return LocalBlobWriter(self.path_of(key), self.temp_dir / temp_name())

    async def seal(self, writer: BlobWriter, *last: Buffer) -> None:
        local = _local(writer)
        await _finish_in_thread(lambda: local._seal(last))

    async def commit_batch(self, writers: Sequence[BlobWriter]) -> None:
        batch = [_local(writer) for writer in writers]
        if batch:
            await _finish_in_thread(lambda: _move_all(batch))

    async def put_file(self, key: str, source: Path) -> None:
        final = self.path_of(key)

        def move() -> None:
            make_dirs(final.parent)
            with open(source, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(source, final)
            fsync_dir(final.parent)

        await asyncio.to_thread(move)

    async def fetch(self, key: str, destination: Path) -> None:
        await asyncio.to_thread(shutil.copyfile, self.path_of(key), destination)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        async with aiofiles.open(self.path_of(key), "rb") as handle:
            await handle.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await handle.read(size)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    async def size(self, key: str) -> int | None:
        try:
            stat = await aiofiles.os.stat(self.path_of(key))
        except FileNotFoundError:
            return None
        return stat.st_size

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_of(key).unlink, True)

    async def delete_prefix(self, prefix: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.path_of(prefix), True)

    async def list(self, prefix: str) -> AsyncIterator[tuple[str, float]]:
        base = self.path_of(prefix)

        def walk() -> list[tuple[str, float]]:
            found = []
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    path = Path(dirpath) / name
                    try:
                        mtime = path.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    found.append((path.relative_to(self.root).as_posix(), mtime))
            return found

        for item in await asyncio.to_thread(walk):
            yield item

    async def check(self) -> None:
        probe = self.temp_dir / f"ready-{secrets.token_hex(4)}"
        async with aiofiles.open(probe, "wb") as handle:
            await handle.write(b"ok")
        await aiofiles.os.remove(probe)
