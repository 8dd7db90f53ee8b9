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
    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".writer-lock")
        self._fd: int | None = None

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    async def acquire(self) -> None:
        """Take the lock; the caller must ``release`` it. Callers in one process must not
        overlap (one writer connection sees to that): the lock is the descriptor's."""
        fd = self._descriptor()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread takes the lock in the end: let it go as soon as it does.
            waiting.add_done_callback(lambda done: _release_if_taken(fd, done))
            raise

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _release_if_taken(fd: int, done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is None:
        fcntl.flock(fd, fcntl.LOCK_UN)
