"""Verify: a direct upload's bytes went straight to storage, so its hash is read back from
there; the hash the client announced, if any, must match. Runs before the file's other
tasks are of any use to a client that waits for ``ready``, but alongside them."""

from __future__ import annotations

import asyncio
import hashlib

from uploads_api.db.files import FileRepository
from uploads_api.db.models import Task
from uploads_api.storage import Storage
from uploads_api.tasks.base import PermanentError


class VerifyTask:
    name = "verify"

    def __init__(self, storage: Storage, files: FileRepository) -> None:
        self.storage = storage
        self.files = files

    async def run(self, task: Task) -> None:
        assert task.file_id is not None
        record = await self.files.get_file(task.file_id)
        if record is None:
            return  # deleted meanwhile
        digest = hashlib.sha256()
        size = 0
        async for chunk in self.storage.read(record.storage_key):
            size += len(chunk)
            # Hashing a large chunk holds the CPU for a while: not on the event loop.
            await asyncio.to_thread(digest.update, chunk)
        if size != record.size:
            raise PermanentError(f"storage holds {size} bytes, not the {record.size} recorded")
        sha256 = digest.hexdigest()
        announced = (task.payload or {}).get("sha256")
        await self.files.record_hash(record.id, sha256, verified=announced == sha256)
        if announced is not None and announced != sha256:
            raise PermanentError(
                f"the stored bytes hash to {sha256}, not the {announced} the client announced"
            )
