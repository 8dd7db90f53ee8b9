"""Local-disk storage: blobs are files under ``<data dir>/blobs``, written through a temp file
in ``<data dir>/tmp`` that is fsynced and atomically renamed into place."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os

from uploads_api.storage.keys import validate_key
from uploads_api.storage.tempnames import temp_name

READ_CHUNK = 1024 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobWriter:
    def __init__(self, final_path: Path, temp_path: Path, handle: Any) -> None:
        self._final = final_path
        self._temp = temp_path
        self._handle = handle
        self._done = False

    @property
    def temp_path(self) -> Path:
        return self._temp

    async def write(self, data: bytes) -> None:
        await self._handle.write(data)

    async def commit(self) -> None:
        if self._done:
            return
        await self._handle.flush()
        # fsync before rename: after a crash the blob is either whole at its key or absent.
        await asyncio.to_thread(os.fsync, self._handle.fileno())
        await self._handle.close()
        await asyncio.to_thread(self._move_into_place)
        self._done = True

    def _move_into_place(self) -> None:
        self._final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._temp, self._final)
        _fsync_dir(self._final.parent)

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            await self._handle.close()
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
        handle = await aiofiles.open(temp, "wb")
        return LocalBlobWriter(final, temp, handle)

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
