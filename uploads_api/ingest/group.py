"""``SinkGroup``: the files of one request are stored all together or not at all.

Where storage allows it (``BatchCommit``: local disk), each file is synced as soon as its
last bytes are in, while the next part is read, and all are named at their keys at the
end, in one directory (their ids share a first byte) synced once for all."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from types import TracebackType

from uploads_api.db.models import NewFile
from uploads_api.ingest.policy import UploadPolicy
from uploads_api.ingest.sink import FileSink
from uploads_api.storage import BatchCommit, BlobTarget

log = logging.getLogger(__name__)

# Files whose last write and sync may be under way at once: they hold their last buffer
# (up to 1 MiB each) until written.
MAX_SEALING = 8


class SinkGroup:
    """Use as ``async with``: any exception inside removes every temp file of the request."""

    def __init__(self, storage: BlobTarget, policy: UploadPolicy) -> None:
        self._storage = storage
        self._policy = policy
        self._sinks: list[FileSink] = []
        self._finished: list[NewFile] = []
        self._sealing: deque[FileSink] = deque()
        self._id_prefix = secrets.token_hex(1)

    def __len__(self) -> int:
        return len(self._sinks)

    async def open(self, filename: str | None, expected_sha256: str | None = None) -> FileSink:
        self._policy.take_file()
        sink = await FileSink.open(
            self._storage, filename, self._policy, expected_sha256, self._id_prefix
        )
        self._sinks.append(sink)
        return sink

    async def finish(self, sink: FileSink) -> None:
        self._finished.append(await sink.finish())
        self._sealing.append(sink)
        if len(self._sealing) > MAX_SEALING:
            await self._sealing.popleft().sealed()

    async def commit_all(self) -> list[NewFile]:
        """Move every file into place; if one fails, take back those already moved."""
        committed: list[NewFile] = []
        try:
            if isinstance(self._storage, BatchCommit):
                for sink in self._sealing:
                    await sink.sealed()
                committed = list(self._finished)
                await self._storage.commit_batch([sink.writer for sink in self._sinks])
                return committed
            for sink, received in zip(self._sinks, self._finished, strict=True):
                # Counted before it is done: a commit cut short may have moved it in place.
                committed.append(received)
                await sink.commit()
        except BaseException:
            await remove_blobs(self._storage, committed)
            raise
        return committed

    async def __aenter__(self) -> SinkGroup:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            # Shielded: a cancelled request must still take its temp files with it.
            await asyncio.shield(self._abort_all())

    async def _abort_all(self) -> None:
        for sink in self._sinks:
            try:
                await sink.abort()
            except OSError:
                log.exception("could not remove a temp file; the sweep will")


async def remove_blobs(storage: BlobTarget, files: list[NewFile]) -> None:
    """Delete committed blobs whose records will never be written; what cannot be removed
    now is left to the sweep, which deletes blobs without a record."""
    for item in files:
        try:
            await storage.delete(item.storage_key)
        except OSError:
            log.exception("could not remove %s; the sweep will", item.storage_key)
