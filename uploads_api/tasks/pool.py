"""A process pool for image work: decoders run apart from the server, so a crash or a
hostile file cannot take it down, and CPU-heavy work never holds the event loop.

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

from uploads_api.media.worker import configure_worker
from uploads_api.tasks.base import RetryableError

T = TypeVar("T")
log = logging.getLogger(__name__)


class ImagePool:
    def __init__(self, workers: int, max_pixels: int, idle_seconds: float | None = None) -> None:
        self._workers = workers
        self._max_pixels = max_pixels
        self._idle_seconds = idle_seconds
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
            initargs=(self._max_pixels,),
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
                executor.submit(configure_worker, self._max_pixels) for _ in range(self._workers)
            ]
            for done in warm:
                done.result()
        except Exception as exc:
            executor.shutdown(wait=False, cancel_futures=True)
            raise RetryableError(f"the image workers did not start: {exc}") from exc
        return executor

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        executor = await self._running_executor()
        self._in_flight += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except BrokenProcessPool as exc:
            self._replace(executor)
            raise RetryableError("an image worker process crashed") from exc
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle_seconds is not None:
                self._idle_timer = asyncio.get_running_loop().call_later(
                    self._idle_seconds, self._stop_idle
                )

    def _stop_idle(self) -> None:
        self._idle_timer = None
        if self._in_flight == 0 and self._executor is not None:
            log.info("image worker pool idle for %gs; stopping it", self._idle_seconds)
            self.shutdown()

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is broken:
            log.warning("image worker pool broken; the next image starts a new one")
            self._executor = None
            broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
