"""Group commit: writes that arrive while one transaction is being committed share the next.

Each write transaction costs a handful of round trips through the event loop (checkout,
BEGIN, each statement, COMMIT), and on SQLite every one of them queues for the single
writer connection. Under a burst of small uploads that queue, not the work, made the
latency. Here the uploads that arrive together are written by one transaction: the batch
grows by itself with the load, and a lone upload is written at once.

A batch that one bad item breaks (a constraint) is written again one item at a time, so
that item fails alone; a batch the database refuses (locked, gone) fails as a whole, at
once. A caller whose item is in a transaction waits for its outcome, even if cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.exc import DataError, IntegrityError

Item = TypeVar("Item")
Result = TypeVar("Result")

# One transaction that writes these items: a result for each, in order, once committed.
CommitBatch = Callable[[list[Item]], Awaitable[list[Result]]]


class GroupCommit(Generic[Item, Result]):
    def __init__(self, commit: CommitBatch[Item, Result], max_batch: int = 64) -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: Item) -> Result:
        """Write ``item`` in the next transaction; its result once that has committed."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (a test's, or a worker's): nothing of the old one carries over.
            self._loop, self._pending, self._flusher = loop, [], None
        entry = (item, loop.create_future())
        self._pending.append(entry)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        try:
            return await asyncio.shield(entry[1])
        except asyncio.CancelledError:
            if entry in self._pending:
                self._pending.remove(entry)  # not begun: nothing was written
                raise
            # Already in a transaction: its outcome stands, so the caller must see it.
            return await _outcome(entry[1])

    async def _flush(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._write_batch(batch)
                batch = []
        except BaseException:
            # Cancelled (shutdown) or worse: no caller may wait for a write that won't come.
            for _, future in batch + self._pending:
                future.cancel()
            self._pending = []
            raise

    async def _write_batch(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._commit([item for item, _ in batch])
        except (IntegrityError, DataError) as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            # One item broke the batch: write each alone, so only that one fails.
            for item, future in batch:
                try:
                    (result,) = await self._commit([item])
                except Exception as single:
                    _fail(future, single)
                else:
                    _resolve(future, result)
            return
        except Exception as exc:
            # The database is busy or gone: every item would fail the same way, so all do.
            for _, future in batch:
                _fail(future, exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _resolve(future, result)


def _resolve(future: asyncio.Future[Result], result: Result) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Result], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


async def _outcome(future: asyncio.Future[Result]) -> Result:
    """The write's outcome, waited for through cancellation, which is withdrawn: the
    transaction has begun and its result cannot be taken back from the caller."""
    task = asyncio.current_task()
    while True:
        if task is not None:
            task.uncancel()
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                raise
