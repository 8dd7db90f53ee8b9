"""Audit entries on their way to the database, kept in memory and written in batches, so
that an upload or a download costs the log no transaction of its own.

A batch is written every ``interval`` seconds, or as soon as ``batch`` entries wait, and
once more at shutdown (``stop``). Failed authentications are already counted here per
address and minute. While the database refuses writes the entries wait and the write is
tried again after a growing pause; past ``limit`` waiting entries the oldest are dropped,
with a warning, so memory stays bounded. What a killed process had not written yet is
lost: the log line every action leaves is the record of it then.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Hashable

from uploads_api.db.audit import AuditRepository, minute_of
from uploads_api.db.models import AUTH_FAILED, AuditEntry

log = logging.getLogger(__name__)

# The longest pause between two tries while the database refuses writes.
MAX_RETRY_DELAY = 5.0
# At most one warning about dropped entries per this many seconds.
DROP_WARNING_EVERY = 10.0


class AuditBuffer:
    def __init__(
        self,
        repository: AuditRepository,
        *,
        interval: float = 0.5,
        batch: int = 200,
        limit: int = 10_000,
    ) -> None:
        self.repository = repository
        self.interval = interval
        self.batch = batch
        self.limit = limit
        # Insertion order is age order. Failed authentications share a key per address and
        # minute; every other entry has a key of its own.
        self._pending: dict[Hashable, AuditEntry] = {}
        self._keys = itertools.count()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False
        self.dropped = 0
        self._last_drop_warning = float("-inf")

    @property
    def pending(self) -> int:
        """Entries waiting (a per-minute tally of failed authentications is one)."""
        return len(self._pending)

    def add(self, entry: AuditEntry) -> None:
        """Queue an entry; never waits and never raises for the database's sake."""
        key: Hashable
        if entry.action == AUTH_FAILED:
            key = (entry.address, minute_of(entry.at))
            known = self._pending.get(key)
            if known is not None:
                self._pending[key] = known.counted_with(entry)
                return
        else:
            key = next(self._keys)
        self._pending[key] = entry
        self._trim()
        # While the database refuses writes the retry pause holds, however much waits.
        if len(self._pending) >= self.batch and not self._failing and self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        """Write in the background from now on (in the running event loop)."""
        if self._task is None:
            self._stopping = False
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Stop the background writer and write what still waits."""
        if self._task is not None:
            self._stopping = True
            assert self._wake is not None
            self._wake.set()
            await asyncio.wait([self._task])
            self._task = None
        if not await self.flush():
            log.error("%d audit entries could not be written and are lost", self.pending)

    async def flush(self) -> bool:
        """Write everything waiting in one transaction. ``False`` if the database refused:
        the entries wait for the next try (newer ones merged in)."""
        if not self._pending:
            return True
        batch, self._pending = self._pending, {}
        try:
            await self.repository.write(list(batch.values()))
        except Exception as exc:
            self._restore(batch)
            self._failing = True
            log.warning(
                "could not write %d audit entries, kept for the next try: %s", len(batch), exc
            )
            return False
        except BaseException:
            # Cancelled mid-write: the transaction rolled back, so nothing is lost.
            self._restore(batch)
            raise
        if self._failing:
            self._failing = False
            log.info("audit entries written again (%d waited)", len(batch))
        return True

    async def _run(self) -> None:
        pause = self.interval
        while not self._stopping:
            await self._sleep(pause)
            if self._stopping:
                return
            pause = self.interval if await self.flush() else min(pause * 2, MAX_RETRY_DELAY)

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        # Cleared after waking, not before sleeping: a batch filled meanwhile is not missed.
        self._wake.clear()

    def _restore(self, batch: dict[Hashable, AuditEntry]) -> None:
        """Put a batch that was not written back in front of what came meanwhile."""
        newer, self._pending = self._pending, batch
        for key, entry in newer.items():
            known = self._pending.get(key)
            self._pending[key] = entry if known is None else known.counted_with(entry)
        self._trim()

    def _trim(self) -> None:
        over = len(self._pending) - self.limit
        if over <= 0:
            return
        for key in list(itertools.islice(self._pending, over)):
            del self._pending[key]
        self.dropped += over
        now = time.monotonic()
        if now - self._last_drop_warning >= DROP_WARNING_EVERY:
            log.warning(
                "audit buffer full (%d entries wait for the database): dropping the oldest,"
                " %d so far",
                self.limit,
                self.dropped,
            )
            self._last_drop_warning = now
