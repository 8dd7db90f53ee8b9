"""When each stored variant was last served, kept cheaply for the sweep's least recently
used order: a serve costs a dictionary look-up, and the database gets one batched update
a couple of seconds later, at most once per variant every ``resolution`` seconds in each
process. A use not yet written when the process is killed is lost: the order is right to
about ``resolution``, which is all the cap needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime

from uploads_api.db.tables import utcnow
from uploads_api.db.variants import VariantRepository

log = logging.getLogger(__name__)

# Variants whose last write this process remembers; past it the memory starts afresh (the
# cost: one more write for each).
MAX_REMEMBERED = 100_000


class VariantUses:
    def __init__(
        self, repository: VariantRepository, *, resolution: float = 300.0, delay: float = 2.0
    ) -> None:
        self.repository = repository
        self.resolution = resolution
        self.delay = delay
        self._written: dict[str, float] = {}  # key -> monotonic time of its last use noted
        self._pending: dict[str, datetime] = {}
        self._flush: asyncio.Task[None] | None = None

    def made(self, key: str) -> None:
        """A variant just recorded, with its use: nothing to write for a while."""
        self._remember(key, time.monotonic())

    def note(self, key: str) -> None:
        """A variant served now."""
        now = time.monotonic()
        last = self._written.get(key)
        if last is not None and now - last < self.resolution:
            return
        self._remember(key, now)
        self._pending[key] = utcnow()
        if self._flush is None or self._flush.done():
            self._flush = asyncio.ensure_future(self._flush_soon())

    def _remember(self, key: str, at: float) -> None:
        if len(self._written) >= MAX_REMEMBERED:
            self._written.clear()
        self._written[key] = at

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.delay)
        await self.flush()

    async def flush(self) -> None:
        """Write the uses noted so far; a failure loses them (with a warning), no more."""
        pending, self._pending = self._pending, {}
        try:
            await self.repository.touch(pending)
        except Exception as exc:
            log.warning("could not record the last use of %d variants: %s", len(pending), exc)

    async def stop(self) -> None:
        if self._flush is not None and not self._flush.done():
            self._flush.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush
        await self.flush()
