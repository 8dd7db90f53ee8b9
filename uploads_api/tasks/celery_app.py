"""Celery mode: task rows stay the source of truth; Celery only carries their ids.

The API publishes the ids of freshly committed rows (``CeleryDispatcher``); a worker claims
a row by id exactly as the in-process runner would, runs the very same task classes
through ``TaskExecutor`` and records the outcome in the database. A message that arrives
twice, late, or for a deleted file finds nothing to claim and does nothing. Beat runs the
sweep and a reconciler that re-publishes rows left waiting (a publish lost between commit
and broker, a worker killed mid-task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from celery import Celery
from celery.signals import worker_shutdown

from uploads_api.config import Settings
from uploads_api.db.models import Task
from uploads_api.db.queue import TaskQueue
from uploads_api.tasks.base import TaskHandler
from uploads_api.tasks.executor import TaskExecutor, backoff_delay, new_worker_id

T = TypeVar("T")
log = logging.getLogger(__name__)

RUN_TASK = "uploads.run_task"
SWEEP = "uploads.sweep"
RECONCILE = "uploads.reconcile"


class WorkerServices(Protocol):
    """What a worker needs of the services the composition root builds."""

    @property
    def queue(self) -> TaskQueue: ...

    @property
    def handlers(self) -> Mapping[str, TaskHandler]: ...

    async def start_worker(self) -> None: ...

    async def stop(self) -> None: ...


# Passed in by the composition root, so this module never imports it.
ServicesBuilder = Callable[[Settings], WorkerServices]


def make_celery(settings: Settings, build_services: ServicesBuilder) -> Celery:
    """The Celery app. ``build_services`` is called once, in a worker process, on the
    first task; an API process only publishes and never calls it."""
    app = Celery("uploads_api", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        # Acknowledge after the run, and put the message back if the worker dies: an
        # acknowledged upload is processed even if a worker is killed mid-task.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Longer than any task: Redis redelivers unacknowledged messages after this.
        broker_transport_options={"visibility_timeout": 3600},
        task_ignore_result=True,
        task_default_queue=settings.celery_queue,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        beat_schedule={
            "sweep": {"task": SWEEP, "schedule": settings.sweep_interval},
            "reconcile": {"task": RECONCILE, "schedule": max(5.0, settings.reconcile_after / 2)},
        },
    )
    runtime = WorkerRuntime(settings, app, build_services)

    @app.task(name=RUN_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_task(task_id: int) -> None:
        runtime.run(runtime.run_task(task_id))

    @app.task(name=SWEEP, ignore_result=True)  # type: ignore[untyped-decorator]
    def sweep() -> None:
        runtime.run(runtime.sweep())

    @app.task(name=RECONCILE, ignore_result=True)  # type: ignore[untyped-decorator]
    def reconcile() -> None:
        runtime.run(runtime.reconcile())

    @worker_shutdown.connect  # type: ignore[untyped-decorator]
    def _stop(**_kwargs: Any) -> None:
        runtime.close()

    return app


def publish(app: Celery, task_ids: Sequence[int], countdown: float = 0) -> None:
    for task_id in task_ids:
        app.send_task(RUN_TASK, args=(task_id,), countdown=countdown or None)


def queued_messages(app: Celery, queue: str) -> int:
    """Messages waiting in the broker's queue, not yet taken by a worker."""
    with app.connection_for_read() as connection:
        try:
            declared = connection.default_channel.queue_declare(queue=queue, passive=True)
        except connection.channel_errors:
            return 0  # no such queue: Redis drops a list once it is empty
        return int(declared.message_count)


class CeleryDispatcher:
    """The API side: after a commit, publish the ids of the rows a worker may now claim."""

    def __init__(self, queue: TaskQueue, app: Celery) -> None:
        self.queue = queue
        self.app = app

    async def dispatch(self, file_ids: Sequence[str]) -> None:
        ids = await self.queue.runnable_task_ids(file_ids=file_ids)
        try:
            await asyncio.to_thread(publish, self.app, ids)
        except Exception:
            # The rows are committed; the reconciler publishes them again shortly.
            log.exception("could not publish tasks %s; the reconciler will", ids)


class WorkerRuntime:
    """The worker side: one event loop thread holding the services, shared by Celery's
    worker threads, which hand it coroutines and wait for them."""

    def __init__(self, settings: Settings, app: Celery, build_services: ServicesBuilder) -> None:
        self.settings = settings
        self.app = app
        self._build_services = build_services
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._services: WorkerServices | None = None
        self.worker_id = new_worker_id()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure_started()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="uploads-loop", daemon=True).start()
                asyncio.run_coroutine_threadsafe(self._start(), loop).result()
                self._loop = loop
            return self._loop

    async def _start(self) -> None:
        services = self._build_services(self.settings)
        await services.start_worker()
        self._services = services

    @property
    def services(self) -> WorkerServices:
        assert self._services is not None, "used before the first task started the runtime"
        return self._services

    @property
    def executor(self) -> TaskExecutor:
        services = self.services
        return TaskExecutor(self.settings, services.queue, services.handlers, self.worker_id)

    async def run_task(self, task_id: int) -> None:
        queue = self.services.queue
        lease = self.settings.task_lease_seconds
        claimed = await queue.claim_tasks(self.worker_id, 1, lease, task_id=task_id)
        if not claimed:
            return  # done already, running elsewhere, not due yet, or its file was deleted
        task = claimed[0]
        renewing = asyncio.create_task(self._renew(task))
        try:
            outcome = await self.executor.execute(task)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        if outcome == "retried":
            await self._publish([task.id], backoff_delay(self.settings, task.attempts))
        if task.file_id:
            # The file's cleanup waits for its other tasks: it may be claimable now.
            await self._publish(await queue.runnable_task_ids(file_ids=[task.file_id]))

    async def _renew(self, task: Task) -> None:
        lease = self.settings.task_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            await self.services.queue.renew_leases(self.worker_id, [task.id], lease)

    async def sweep(self) -> None:
        queue = self.services.queue
        await queue.enqueue_sweep()
        await self._publish(await queue.runnable_task_ids(sweeps=True))

    async def reconcile(self) -> None:
        queue = self.services.queue
        for task in await queue.fail_exhausted_leases():
            log.warning("task %s %s failed: its worker died", task.id, task.name)
        waiting = await queue.runnable_task_ids(due_for=self.settings.reconcile_after)
        if not waiting:
            return
        # A backlog is rows whose messages wait in the broker: publishing them again each
        # round would only add duplicates for the workers to claim in vain. As many rows
        # as the broker is short of messages are published again, the longest waiting
        # first; a lost message behind a backlog is found once the workers catch up.
        queued = await asyncio.to_thread(queued_messages, self.app, self.settings.celery_queue)
        missing = await queue.count_runnable() - queued
        if missing > 0:
            log.info(
                "re-publishing %d of %d waiting tasks", min(missing, len(waiting)), len(waiting)
            )
            await self._publish(waiting[:missing])

    async def _publish(self, task_ids: Sequence[int], countdown: float = 0) -> None:
        if task_ids:
            await asyncio.to_thread(publish, self.app, task_ids, countdown)

    def close(self) -> None:
        if self._loop is not None and self._services is not None:
            asyncio.run_coroutine_threadsafe(self._services.stop(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
