"""The in-process task runner: claims due task rows, runs them with bounded concurrency,
renews their leases while they run, records outcomes, and queues the periodic sweep.

Several server processes may share one database: claims are atomic and leases expire, so a
task is never run twice at once and rows left behind by a killed process run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence

from uploads_api import metrics
from uploads_api.config import Settings
from uploads_api.db.models import Task
from uploads_api.db.queue import TaskQueue
from uploads_api.tasks.base import TaskHandler
from uploads_api.tasks.executor import TaskExecutor, backoff_delay, new_worker_id

__all__ = ["TaskRunner", "backoff_delay"]

log = logging.getLogger(__name__)


class TaskRunner:
    def __init__(
        self, settings: Settings, queue: TaskQueue, handlers: Mapping[str, TaskHandler]
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.worker_id = new_worker_id()
        self.executor = TaskExecutor(settings, queue, handlers, self.worker_id)
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._idle = False  # the last claim found nothing

    # The dispatcher side: routes call this (through BackgroundTasks) after committing work.
    async def dispatch(self, file_ids: Sequence[str]) -> None:
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="task-runner")

    async def stop(self, grace: float) -> None:
        """Stop claiming; give running tasks ``grace`` seconds, then put the rest back."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=grace)
        for running in list(self._running.values()):
            running.cancel()
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _loop(self) -> None:
        next_sweep = 0.0
        next_lease_check = 0.0
        renew_every = self.settings.task_lease_seconds / 3
        while not self._stopping:
            now = time.monotonic()
            try:
                if now >= next_sweep:
                    await self.queue.enqueue_sweep()
                    next_sweep = now + self.settings.sweep_interval
                if now >= next_lease_check:
                    await self._maintain_leases()
                    next_lease_check = now + renew_every
                claimed = await self._claim()
            except Exception:
                log.exception("task runner could not reach the database; retrying")
                claimed = 0
            if claimed == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=self.settings.task_poll_interval
                    )

    async def _claim(self) -> int:
        free = self.settings.task_concurrency - len(self._running)
        if free <= 0:
            return 0
        # Idle, a read comes first: a claim is a write transaction, at every poll of every
        # process, with nothing to claim.
        if self._idle and not await self.queue.runnable_task_ids(limit=1):
            return 0
        tasks = await self.queue.claim_tasks(self.worker_id, free, self.settings.task_lease_seconds)
        self._idle = not tasks
        for task in tasks:
            self._running[task.id] = asyncio.create_task(self._execute(task))
        # A full claim suggests more is waiting; claim again at once.
        return len(tasks)

    async def _maintain_leases(self) -> None:
        await self.queue.renew_leases(
            self.worker_id, list(self._running), self.settings.task_lease_seconds
        )
        for task in await self.queue.fail_exhausted_leases():
            log.warning(
                "task %s %s for file %s failed: worker died", task.id, task.name, task.file_id
            )
            metrics.TASK_RUNS.labels(task.name, "failed").inc()

    async def _execute(self, task: Task) -> None:
        try:
            await self.executor.execute(task)
        finally:
            self._running.pop(task.id, None)
            self._wake.set()
