"""Work done once per key, however many callers ask for it at the same moment.

In one process, callers of a key share one run: an asyncio future per key, which the
first caller starts and the others await. Across the processes sharing a data directory
(``serve --workers N``, or a worker beside a server), the run holds an ``flock`` on one of
``LOCK_STRIPES`` lock files the key hashes to; a run in another process waits for it, and
its work should first look whether the other process did the job already. Processes on
other machines share no directory and so no lock: each may do the work once.

A caller that goes away (its client disconnected) leaves the run to the others: it is a
task of its own, shielded from their cancellation.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")
log = logging.getLogger(__name__)

# Lock files, reused for ever, rather than one per key: nothing to clean up. Two keys in
# one stripe only take turns.
LOCK_STRIPES = 256
# A process waiting for another's lock polls, never blocks a thread for a whole run.
POLL_FIRST, POLL_MAX = 0.01, 0.1


class SingleFlight:
    def __init__(self, lock_dir: Path, *, wait_limit: float) -> None:
        """``wait_limit``: seconds to wait for another process's lock; past it the work
        runs anyway (a stuck holder must not stop every later request)."""
        self.lock_dir = lock_dir
        self.wait_limit = wait_limit
        self._runs: dict[str, asyncio.Task[Any]] = {}

    def lock_file(self, key: str) -> Path:
        """The file whose ``flock`` runs of ``key`` take turns on."""
        stripe = hashlib.sha256(key.encode()).digest()[0] % LOCK_STRIPES
        return self.lock_dir / f"{stripe:02x}.lock"

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """``work()``'s result, or its exception; callers of ``key`` meanwhile share it."""
        run = self._runs.get(key)
        if run is None:
            run = asyncio.ensure_future(self._locked(key, work))
            self._runs[key] = run
            run.add_done_callback(lambda done: self._finished(key, done))
        return cast(T, await asyncio.shield(run))

    def _finished(self, key: str, done: asyncio.Task[Any]) -> None:
        if self._runs.get(key) is done:
            del self._runs[key]
        if not done.cancelled():
            done.exception()  # retrieved, even when every caller went away

    async def _locked(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        fd = await self._acquire(key)
        try:
            return await work()
        finally:
            if fd is not None:
                os.close(fd)  # releases the flock

    async def _acquire(self, key: str) -> int | None:
        """The descriptor holding the key's stripe lock, or ``None`` if it could not be had
        (no lock directory, or another process held it past ``wait_limit``)."""
        path = self.lock_file(key)
        try:
            fd = await asyncio.to_thread(_open, path)
        except OSError as exc:
            log.warning("no lock file %s (%s): %s runs without it", path, exc, key)
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_limit
        pause = POLL_FIRST
        try:
            while not _try_lock(fd):
                if loop.time() >= deadline:
                    log.warning("lock %s held past %gs: %s runs anyway", path, self.wait_limit, key)
                    os.close(fd)
                    return None
                await asyncio.sleep(pause)
                pause = min(pause * 2, POLL_MAX)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # never blocks
    except BlockingIOError:
        return False
    return True


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
