"""Per-file scratch space under ``<data dir>/tmp/work``, and local copies for decoders.

A task's scratch goes when the task ends, on whichever machine ran it; the file's cleanup
task and the sweep catch what a killed task left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from uploads_api.storage import LocalPaths, Storage
from uploads_api.storage.keys import validate_file_id
from uploads_api.storage.tempnames import temp_name


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root

    def dir_for(self, file_id: str) -> Path:
        return self.root / validate_file_id(file_id)

    @contextlib.asynccontextmanager
    async def scratch(self, file_id: str, name: str) -> AsyncIterator[Path]:
        """A fresh directory for one task run, removed when the run ends."""
        # Named after this process, so a sweep can tell when its writer was killed.
        path = self.dir_for(file_id) / temp_name(suffix=f".{name}")
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        try:
            yield path
        finally:
            await asyncio.to_thread(self._remove_run, path)

    def _remove_run(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when no other run of this file is using it

    @contextlib.asynccontextmanager
    async def local_copy(self, storage: Storage, key: str, file_id: str) -> AsyncIterator[Path]:
        """A path a decoder can open: the blob itself when local, else a fetched copy."""
        if isinstance(storage, LocalPaths):
            yield storage.path_of(key)
            return
        async with self.scratch(file_id, "source") as directory:
            copy = directory / "original"
            await storage.fetch(key, copy)
            yield copy

    async def remove(self, file_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.dir_for(file_id), True)
