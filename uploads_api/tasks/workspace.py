"""Per-file scratch space under ``<data dir>/tmp/work``, and local copies for decoders."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from uploads_api.storage import LocalPaths, Storage
from uploads_api.storage.keys import validate_file_id


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root

    def dir_for(self, file_id: str) -> Path:
        return self.root / validate_file_id(file_id)

    async def make_dir(self, file_id: str, name: str) -> Path:
        path = self.dir_for(file_id) / name
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        return path

    async def local_path(self, storage: Storage, key: str, file_id: str) -> Path:
        """A path a decoder can open: the blob itself when local, else a fetched copy."""
        if isinstance(storage, LocalPaths):
            return storage.path_of(key)
        target = await self.make_dir(file_id, "source")
        copy = target / "original"
        await storage.fetch(key, copy)
        return copy

    async def remove(self, file_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.dir_for(file_id), True)
