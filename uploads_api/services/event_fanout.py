"""The one poller of a process and the queues it fills: while at least one client listens,
it reads what committed to the outbox since it last looked, and hands each event to the
queue of every connection allowed to see it.

Events come from the database, never from memory, so an event committed by any process
(another ``--workers`` process, a Celery worker) reaches every client. The poller wakes at
once when this process commits events, and looks every ``interval`` seconds otherwise.

Positions (``seq``) are handed out when a row is inserted, not when it commits: on
PostgreSQL a transaction can commit event 41 after another committed event 42. A position
passed over is kept as a gap and asked for again on every poll for ``gap_timeout``
seconds, after which it is taken for a rollback (whose position is never used). SQLite
commits one writer at a time, so there are no gaps there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass

from uploads_api.db.event_feed import EventFeed, FeedEvent
from uploads_api.db.events import EVENT_TYPES

log = logging.getLogger(__name__)

# Everything the outbox holds but webhook.test, which goes to one endpoint only.
STREAM_TYPES = EVENT_TYPES
OVERFLOW, SHUTDOWN = "overflow", "shutdown"


@dataclass(frozen=True)
class StreamEvent:
    seq: int
    id: str
    type: str
    owner: str | None
    # The stored payload as compact JSON: encoded once, however many clients it goes to.
    data: str

    @classmethod
    def of(cls, row: FeedEvent) -> StreamEvent:
        data = json.dumps(row.payload, separators=(",", ":"), ensure_ascii=False)
        return cls(row.seq, row.id, row.type, row.owner, data)


class Subscription:
    """One connection's bounded queue. A client that falls ``max_queued`` events behind
    is dropped (its stream ends; it resumes with ``Last-Event-ID``): it never holds up
    the poller or anyone else, and never holds more than that in memory."""

    def __init__(self, scope: str | None, *, max_queued: int) -> None:
        self.scope = scope
        self.max_queued = max_queued
        self.ended: str | None = None
        self._queue: deque[StreamEvent] = deque()
        self._ready = asyncio.Event()

    def offer(self, event: StreamEvent) -> None:
        if self.ended is not None or (self.scope is not None and event.owner != self.scope):
            return
        if len(self._queue) >= self.max_queued:
            self._queue.clear()
            self.end(OVERFLOW)
            return
        self._queue.append(event)
        self._ready.set()

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self._ready.set()

    def queued_seqs(self) -> list[int]:
        return [event.seq for event in self._queue]

    async def take(self, timeout: float) -> list[StreamEvent]:
        """What is queued, after waiting up to ``timeout`` seconds for something (or for
        the end); an empty list when nothing came."""
        if not self._queue and self.ended is None and timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
        self._ready.clear()
        taken = list(self._queue)
        self._queue.clear()
        return taken


class EventPoller:
    def __init__(
        self,
        feed: EventFeed,
        *,
        interval: float = 0.5,
        gap_timeout: float = 5.0,
        batch: int = 500,
        max_gaps: int = 1000,
    ) -> None:
        self.feed = feed
        self.interval = interval
        self.gap_timeout = gap_timeout
        self.batch = batch
        self.max_gaps = max_gaps
        self._subscriptions: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._closed = False
        # The highest position delivered, and the positions below it not seen yet, each
        # with the time it stops being waited for. None until the first read.
        self._high: int | None = None
        self._gaps: dict[int, float] = {}

    def wake(self) -> None:
        """This process committed events (``EventWriter.subscribe``): read them now."""
        if self._wakeup is not None:
            self._wakeup.set()

    def subscribe(self, scope: str | None, *, max_queued: int) -> Subscription:
        subscription = Subscription(scope, max_queued=max_queued)
        if self._closed:
            subscription.end(SHUTDOWN)
            return subscription
        self._subscriptions.add(subscription)
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        if self._wakeup is not None:
            self._wakeup.set()  # the last one gone: the poller stops now, not a poll later

    @property
    def listeners(self) -> int:
        return len(self._subscriptions)

    def floor(self) -> int | None:
        """The lowest position this poller may still deliver; None before its first read."""
        if self._high is None:
            return None
        return min(self._gaps, default=self._high + 1)

    def end_all(self) -> None:
        """End every stream now and take no new ones; nothing to await, so a signal
        handler may call it."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.end(SHUTDOWN)
        self._subscriptions.clear()
        self.wake()  # nobody listens now: the poller stops

    async def close(self) -> None:
        """``end_all``, and wait for the poller to be gone."""
        self.end_all()
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        try:
            while self._subscriptions:
                wakeup.clear()
                try:
                    await self._poll()
                except Exception:
                    # The database may be away for a moment; streams stay open meanwhile.
                    log.warning("reading new events failed; trying again", exc_info=True)
                if not self._subscriptions:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await wakeup.wait()
        finally:
            # Nobody listens: the next subscriber starts from what is newest then.
            self._task = self._wakeup = None
            self._high = None
            self._gaps = {}

    async def _poll(self) -> None:
        if self._high is None:
            self._high = await self.feed.newest_seq()
        while True:
            now = time.monotonic()
            self._gaps = {seq: until for seq, until in self._gaps.items() if until > now}
            rows = await self.feed.committed_since(self._high, self._gaps, limit=self.batch)
            if not rows:
                newest = await self.feed.newest_seq()
                if newest < self._high:
                    # SQLite reuses the positions of rows that were removed from the end
                    # of the table (the sweep after a long quiet time): start over there.
                    self._high, self._gaps = newest, {}
                return
            for row in rows:
                self._note_position(row.seq, now)
                if row.type in STREAM_TYPES:
                    self._deliver(StreamEvent.of(row))
            if len(rows) < self.batch:
                return

    def _note_position(self, seq: int, now: float) -> None:
        assert self._high is not None
        if seq <= self._high:
            self._gaps.pop(seq, None)  # a late commit, delivered now
            return
        first = max(self._high + 1, seq - self.max_gaps)
        for missing in range(first, seq):
            self._gaps[missing] = now + self.gap_timeout
        if len(self._gaps) > self.max_gaps:
            for oldest in sorted(self._gaps)[: len(self._gaps) - self.max_gaps]:
                del self._gaps[oldest]
        self._high = seq

    def _deliver(self, event: StreamEvent) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(event)
            if subscription.ended is not None:
                self._subscriptions.discard(subscription)
