"""A process pool for media work: decoders run apart from the server, so a crash or a
hostile file cannot take it down, and CPU-heavy work never holds the event loop. Each call
has a wall-clock limit (the workers are replaced when one overruns), a CPU-time budget and,
in each worker, a cap on memory (``media.worker``).

The API server starts the pool on its first image and stops it after a quiet spell
(``idle_seconds``), so a server taking only documents, or resting, carries no decoder
processes (each holds about 40 MiB once it has decoded a photo)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from uploads_api.media.worker import CpuBudgetExceeded, configure_worker, limited
from uploads_api.tasks.base import PermanentError, RetryableError

T = TypeVar("T")
log = logging.getLogger(__name__)


class MediaTimeout(PermanentError):
    """A decoder ran past the pool's time limit on a file; it would do so again."""


class ImagePool:
    def __init__(
        self,
        workers: int,
        max_pixels: int,
        idle_seconds: float | None = None,
        *,
        timeout: float = 120.0,
        memory_limit: int | None = None,
    ) -> None:
        self._workers = workers
        self._max_pixels = max_pixels
        self._idle_seconds = idle_seconds
        self._timeout = timeout
        self._memory_limit = memory_limit
        self._slots = asyncio.Semaphore(workers)
        self._executor: ProcessPoolExecutor | None = None
        self._starting: asyncio.Future[ProcessPoolExecutor] | None = None
        self._in_flight = 0
        self._idle_timer: asyncio.TimerHandle | None = None

    def _new_executor(self) -> ProcessPoolExecutor:
        # forkserver: workers never inherit the server's threads and open sockets.
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=configure_worker,
            initargs=(self._max_pixels, self._memory_limit),
        )

    async def start(self) -> None:
        """Start and warm every worker, so the first image does not pay for imports."""
        await self._running_executor()

    async def _running_executor(self) -> ProcessPoolExecutor:
        if self._executor is not None:
            return self._executor
        # Started in a thread: spawning through the forkserver blocks for tens of ms per
        # process (the first time, for the forkserver's own imports), which would stall
        # every request on the event loop. Callers arriving meanwhile share the start.
        if self._starting is None:
            self._starting = asyncio.ensure_future(asyncio.to_thread(self._start_warm))
        starting = self._starting
        try:
            executor = await asyncio.shield(starting)
        finally:
            if starting.done() and self._starting is starting:
                self._starting = None
        if self._executor is None:
            self._executor = executor
        return self._executor

    def _start_warm(self) -> ProcessPoolExecutor:
        executor = self._new_executor()
        try:
            warm = [
                executor.submit(configure_worker, self._max_pixels, self._memory_limit)
                for _ in range(self._workers)
            ]
            for done in warm:
                done.result()
        except Exception as exc:
            executor.shutdown(wait=False, cancel_futures=True)
            raise RetryableError(f"the image workers did not start: {exc}") from exc
        return executor

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        self._in_flight += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        try:
            # Callers queue here, not in the executor: the time limit then counts only a
            # call's own run, and a killed pool has no queued calls to drop.
            async with self._slots:
                return await self._run(await self._running_executor(), fn, *args)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle_seconds is not None:
                self._idle_timer = asyncio.get_running_loop().call_later(
                    self._idle_seconds, self._stop_idle
                )

    async def _run(self, executor: ProcessPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            call = loop.run_in_executor(executor, limited, self._timeout, fn, *args)
            return await asyncio.wait_for(call, self._timeout)
        except CpuBudgetExceeded as exc:
            raise MediaTimeout(
                f"decoding used more than {self._timeout:g} s of CPU (UPLOADS_MEDIA_TIMEOUT)"
            ) from exc
        except TimeoutError as exc:
            # The worker goes on decoding until it is killed; so do its neighbours' tasks,
            # which the broken pool hands back as retryable.
            self._kill(executor)
            raise MediaTimeout(
                f"decoding took longer than {self._timeout:g} s (UPLOADS_MEDIA_TIMEOUT)"
            ) from exc
        except BrokenProcessPool as exc:
            self._replace(executor)
            raise RetryableError("a media worker process crashed") from exc

    def _stop_idle(self) -> None:
        self._idle_timer = None
        if self._in_flight == 0 and self._executor is not None:
            log.info("image worker pool idle for %gs; stopping it", self._idle_seconds)
            self.shutdown()

    def _kill(self, executor: ProcessPoolExecutor) -> None:
        # ProcessPoolExecutor cannot stop a running call; its processes can be ended.
        processes = getattr(executor, "_processes", None) or {}
        for process in list(processes.values()):
            process.kill()
        self._replace(executor)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is broken:
            log.warning("image worker pool broken; the next image starts a new one")
            self._executor = None
            # Not cancel_futures: a call already handed over gets BrokenProcessPool (a
            # retry), never a CancelledError its caller would take for a shutdown.
            broken.shutdown(wait=False, cancel_futures=False)

    def shutdown(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
