"""Running one claimed task: call its handler, turn how it ended into the row's state,
log one line and count it. Used by the in-process runner and by Celery workers alike."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping

from uploads_api import metrics
from uploads_api.config import Settings
from uploads_api.db.models import FAILED, SKIPPED, SUCCEEDED, Task
from uploads_api.db.queue import TaskQueue
from uploads_api.tasks.base import PermanentError, RetryableError, TaskHandler, TaskSkipped

log = logging.getLogger("uploads_api.tasks.runner")


def backoff_delay(settings: Settings, attempts: int) -> float:
    return float(settings.task_retry_base_delay * (2 ** max(0, attempts - 1)))


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class TaskExecutor:
    def __init__(
        self,
        settings: Settings,
        queue: TaskQueue,
        handlers: Mapping[str, TaskHandler],
        worker_id: str,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.handlers = dict(handlers)
        self.worker_id = worker_id

    async def execute(self, task: Task) -> str:
        """Run one claimed task and record how it ended; the outcome's name is returned."""
        started = time.perf_counter()
        outcome = "interrupted"
        try:
            outcome = await self._run_and_record(task)
        except Exception:
            # Recording the outcome failed (database gone): the lease lapses and it runs again.
            outcome = "unrecorded"
            log.exception("could not record the outcome of task %s", task.id)
        finally:
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
        return outcome

    async def _run_and_record(self, task: Task) -> str:
        handler = self.handlers.get(task.name)
        queue, worker = self.queue, self.worker_id
        try:
            if handler is None:
                raise PermanentError(f"no handler for task {task.name!r}")
            await handler.run(task)
        except asyncio.CancelledError:
            # Shutdown: the attempt did not fail, so it is refunded and the row queued again.
            await asyncio.shield(queue.requeue_task(task, worker, 0, None, refund=True))
            raise
        except TaskSkipped as exc:
            await queue.finish_task(task, worker, SKIPPED, str(exc))
            return "skipped"
        except PermanentError as exc:
            log.warning("task %s file=%s failed: %s", task.name, task.file_id, exc)
            await queue.finish_task(task, worker, FAILED, str(exc))
            return "failed"
        except Exception as exc:
            message, kind = str(exc), type(exc).__name__
            if isinstance(exc, RetryableError):
                message = message or kind
            else:
                log.exception("task %s file=%s raised", task.name, task.file_id)
                message = f"{kind}: {message}" if message else kind
            if task.attempts >= task.max_attempts:
                await queue.finish_task(task, worker, FAILED, message)
                return "failed"
            delay = backoff_delay(self.settings, task.attempts)
            await queue.requeue_task(task, worker, delay, message)
            return "retried"
        await queue.finish_task(task, worker, SUCCEEDED, None)
        return "succeeded"
