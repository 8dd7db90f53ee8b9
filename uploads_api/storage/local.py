"""Local-disk storage: blobs are files under ``<data dir>/blobs``, written through a temp file
in ``<data dir>/tmp`` that is fsynced and atomically renamed into place."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles
import aiofiles.os

from uploads_api.storage.base import Buffer
from uploads_api.storage.keys import validate_key
from uploads_api.storage.tempnames import temp_name

READ_CHUNK = 1024 * 1024
WRITEBACK_STEP = 16 * 1024 * 1024
_FADVISE = hasattr(os, "posix_fadvise")  # not on macOS
_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobWriter:
    """Writes through a raw file descriptor in a worker thread: no second buffer, and the
    GIL is released for the whole write."""

    def __init__(self, final_path: Path, temp_path: Path, fd: int) -> None:
        self._final = final_path
        self._temp = temp_path
        self._fd = fd
        self._written = 0
        self._flushed = 0  # bytes handed to the kernel for writeback so far
        self._done = False

    async def write(self, *chunks: Buffer) -> None:
        await asyncio.to_thread(self._write, chunks)

    def _write(self, chunks: tuple[Buffer, ...]) -> None:
        views = [memoryview(chunk) for chunk in chunks if len(chunk)]
        first = 0
        while first < len(views):
            # One system call for up to IOV_MAX pieces; a short write resumes mid-piece.
            written = os.writev(self._fd, views[first : first + _IOV_MAX])
            self._written += written
            while first < len(views) and written >= len(views[first]):
                written -= len(views[first])
                first += 1
            if written:
                views[first] = views[first][written:]
        if _FADVISE and self._written - self._flushed >= WRITEBACK_STEP:
            # Start writing back what is already here, without waiting for it: the fsync
            # at commit then has little left to do (0.01 s instead of 0.5 s for 1 GiB).
            # On dirty pages DONTNEED only starts their writeback; they stay cached.
            os.posix_fadvise(
                self._fd, self._flushed, self._written - self._flushed, os.POSIX_FADV_DONTNEED
            )
            self._flushed = self._written

    async def commit(self) -> None:
        if self._done:
            return
        # One thread hop for all of it; if the caller is cancelled meanwhile, the work is
        # let finish, so ``abort`` never closes the descriptor under it.
        job = asyncio.ensure_future(asyncio.to_thread(self._commit))
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            await asyncio.wait([job])
            raise

    def _commit(self) -> None:
        # fsync before rename: after a crash the blob is either whole at its key or absent.
        os.fsync(self._fd)
        self._close()
        self._move_into_place()
        self._done = True

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _move_into_place(self) -> None:
        self._final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._temp, self._final)
        _fsync_dir(self._final.parent)

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._close()
        finally:
            await asyncio.to_thread(self._temp.unlink, True)


class LocalStorage:
    """Blobs as files. Also offers ``path_of`` (the ``LocalPaths`` power) for zero-copy reads."""

    def __init__(self, root: Path, temp_dir: Path) -> None:
        self.root = root
        self.temp_dir = temp_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        return self.root / validate_key(key)

    async def open_writer(self, key: str) -> LocalBlobWriter:
        final = self.path_of(key)
        temp = self.temp_dir / temp_name()
        fd = await asyncio.to_thread(
            os.open, temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666
        )
        return LocalBlobWriter(final, temp, fd)

    async def put_file(self, key: str, source: Path) -> None:
        final = self.path_of(key)

        def move() -> None:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(source, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(source, final)
            _fsync_dir(final.parent)

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
