"""One writer at a time across every process that shares a SQLite database file.

SQLite lets one writer in at a time. A process that loses the race sleeps in SQLite's busy
handler, in growing steps (1, 2, 5, 10 ... 100 ms), and retries: with two server
processes under load, that sleeping made the slowest uploads wait about a second while
the lock sat free. Here a writer first takes an advisory lock (``flock``) on a file beside
the database; a waiter blocks in the kernel, in a thread, and is woken the moment the
lock is released. A killed process's lock is released by the kernel. The lock only
orders writers: SQLite's own locking still guards the data.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path


class WriteLock:
    """The lock of one process (one descriptor). Its callers must not overlap: the one
    writer connection sees to that."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".writer-lock")
        self._fd: int | None = None
        # At most one thread waits in flock for this descriptor. A caller that gives up
        # leaves it waiting; the next caller takes it over, or, if none comes, the lock is
        # let go the moment the thread gets it.
        self._waiter: asyncio.Future[None] | None = None
        self._claimed = False
        self._closing = False

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    async def acquire(self) -> None:
        """Take the lock; the caller must ``release`` it."""
        fd = self._descriptor()
        if self._waiter is None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                self._waiter = asyncio.ensure_future(
                    asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                )
                self._waiter.add_done_callback(self._waiter_done)
        waiter = self._waiter
        self._claimed = True
        try:
            await asyncio.shield(waiter)
        except asyncio.CancelledError:
            self._claimed = False
            raise
        finally:
            if waiter.done() and self._waiter is waiter:
                self._waiter = None

    def _waiter_done(self, waiter: asyncio.Future[None]) -> None:
        # Runs before the caller resumes: unclaimed means its caller gave up meanwhile.
        if self._claimed or waiter is not self._waiter:
            return
        self._waiter = None
        if not waiter.cancelled() and waiter.exception() is None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if self._closing:
            self.close()

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._closing = True  # a thread still waits on the descriptor: close after it
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
