"""The in-process task runner: claims due task rows, runs them with bounded concurrency,
renews their leases while they run, records outcomes, and queues the periodic sweep.

Several server processes may share one database: claims are atomic and leases expire, so a
task is never run twice at once and rows left behind by a killed process run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence

from uploads_api import metrics
from uploads_api.config import Settings
from uploads_api.db.models import FAILED, SKIPPED, SUCCEEDED, Task
from uploads_api.db.repository import Repository
from uploads_api.tasks.base import PermanentError, RetryableError, TaskHandler, TaskSkipped

log = logging.getLogger(__name__)


def backoff_delay(settings: Settings, attempts: int) -> float:
    return float(settings.task_retry_base_delay * (2 ** max(0, attempts - 1)))


class TaskRunner:
    def __init__(
        self, settings: Settings, repository: Repository, handlers: Mapping[str, TaskHandler]
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.handlers = dict(handlers)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

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

    @property
    def busy(self) -> int:
        return len(self._running)

    async def _loop(self) -> None:
        next_sweep = 0.0
        next_lease_check = 0.0
        renew_every = self.settings.task_lease_seconds / 3
        while not self._stopping:
            now = time.monotonic()
            try:
                if now >= next_sweep:
                    await self.repository.enqueue_sweep()
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
        tasks = await self.repository.claim_tasks(
            self.worker_id, free, self.settings.task_lease_seconds
        )
        for task in tasks:
            self._running[task.id] = asyncio.create_task(self._execute(task))
        # A full claim suggests more is waiting; claim again at once.
        return len(tasks)

    async def _maintain_leases(self) -> None:
        await self.repository.renew_leases(
            self.worker_id, list(self._running), self.settings.task_lease_seconds
        )
        for task in await self.repository.fail_exhausted_leases():
            log.warning(
                "task %s %s for file %s failed: worker died", task.id, task.name, task.file_id
            )
            metrics.TASK_RUNS.labels(task.name, "failed").inc()

    async def _execute(self, task: Task) -> None:
        started = time.perf_counter()
        outcome = "interrupted"
        try:
            outcome = await self._run_and_record(task)
        except Exception:
            # Recording the outcome failed (database gone): the lease lapses and it runs again.
            outcome = "unrecorded"
            log.exception("could not record the outcome of task %s", task.id)
        finally:
            self._running.pop(task.id, None)
            duration = time.perf_counter() - started
            metrics.TASK_RUNS.labels(task.name, outcome).inc()
            metrics.TASK_DURATION.labels(task.name).observe(duration)
            log.info(
                "task %s file=%s task_id=%s attempt=%s outcome=%s duration=%.3fs",
                task.name,
                task.file_id,
                task.id,
                task.attempts,
                outcome,
                duration,
                extra={
                    "task": task.name,
                    "file_id": task.file_id,
                    "task_id": task.id,
                    "attempt": task.attempts,
                    "outcome": outcome,
                    "duration": round(duration, 4),
                },
            )
            self._wake.set()

    async def _run_and_record(self, task: Task) -> str:
        handler = self.handlers.get(task.name)
        repo, worker = self.repository, self.worker_id
        try:
            if handler is None:
                raise PermanentError(f"no handler for task {task.name!r}")
            await handler.run(task)
        except asyncio.CancelledError:
            # Shutdown: the attempt did not fail, so it is refunded and the row queued again.
            await asyncio.shield(repo.requeue_task(task, worker, 0, None, refund=True))
            raise
        except TaskSkipped as exc:
            await repo.finish_task(task, worker, SKIPPED, str(exc))
            return "skipped"
        except PermanentError as exc:
            log.warning("task %s file=%s failed: %s", task.name, task.file_id, exc)
            await repo.finish_task(task, worker, FAILED, str(exc))
            return "failed"
        except Exception as exc:
            message, kind = str(exc), type(exc).__name__
            if isinstance(exc, RetryableError):
                message = message or kind
            else:
                log.exception("task %s file=%s raised", task.name, task.file_id)
                message = f"{kind}: {message}" if message else kind
            if task.attempts >= task.max_attempts:
                await repo.finish_task(task, worker, FAILED, message)
                return "failed"
            delay = backoff_delay(self.settings, task.attempts)
            await repo.requeue_task(task, worker, delay, message)
            return "retried"
        await repo.finish_task(task, worker, SUCCEEDED, None)
        return "succeeded"
