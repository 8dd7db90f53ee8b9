"""The task queue: atomic claims, leases, outcomes, the sweep row and queue statistics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update

from uploads_api.db.engine import Engines
from uploads_api.db.events import EventWriter
from uploads_api.db.models import ACTIVE_STATES, CLEANUP, FAILED, QUEUED, RUNNING, Task
from uploads_api.db.rows import f, new_task_row, refresh_status, runnable, t, task_of
from uploads_api.db.tables import utcnow

_SWEEP_LOCK = 0x7377_6570  # any fixed number, private to enqueue_sweep


class TaskQueue:
    def __init__(self, engines: Engines, events: EventWriter, *, max_attempts: int = 3) -> None:
        self.engines = engines
        self.events = events
        self.max_attempts = max_attempts

    async def list_tasks(
        self, *, state: str | None, limit: int, after_id: int | None, scope: str | None = None
    ) -> list[Task]:
        query = select(t).order_by(t.c.id.desc()).limit(limit)
        if scope is not None:
            query = query.where(t.c.file_id.in_(select(f.c.id).where(f.c.owner == scope)))
        if state:
            query = query.where(t.c.state == state)
        if after_id is not None:
            query = query.where(t.c.id < after_id)
        async with self.engines.reader.connect() as conn:
            return [task_of(r) for r in await conn.execute(query)]

    async def claim_tasks(
        self, worker: str, limit: int, lease_seconds: float, task_id: int | None = None
    ) -> list[Task]:
        """Atomically take up to ``limit`` runnable tasks (or the one ``task_id``, if it is
        runnable): queued and due, or running with a lapsed lease (their process died).
        Cleanup of a file waits for its other tasks."""
        now = utcnow()
        candidates = select(t.c.id).where(runnable(now))
        if task_id is not None:
            candidates = candidates.where(t.c.id == task_id)
        candidates = (
            candidates.order_by(t.c.run_after, t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(t)
            .where(t.c.id.in_(candidates.scalar_subquery()))
            .values(
                state=RUNNING,
                attempts=t.c.attempts + 1,
                lease_owner=worker,
                lease_until=now + timedelta(seconds=lease_seconds),
                started_at=now,
                finished_at=None,
            )
            .returning(*t.c)
        )
        async with self.engines.write() as conn:
            # RETURNING has no order of its own: oldest first, as claimed.
            claimed = sorted(
                (task_of(r) for r in await conn.execute(claim)),
                key=lambda task: (task.run_after, task.id),
            )
            written = 0
            for file_id in {task.file_id for task in claimed if task.file_id}:
                written += await refresh_status(conn, file_id, self.events)
        self.events.committed(written)
        return claimed

    async def runnable_task_ids(
        self,
        *,
        file_ids: Sequence[str] | None = None,
        sweeps: bool = False,
        due_for: float = 0,
        limit: int = 1000,
    ) -> list[int]:
        """Ids of tasks a worker could claim now: of these files, or the queued sweeps, or
        (``due_for``) those that have been waiting at least that many seconds."""
        now = utcnow()
        query = select(t.c.id).where(runnable(now)).order_by(t.c.run_after, t.c.id).limit(limit)
        if file_ids is not None:
            query = query.where(t.c.file_id.in_(file_ids))
        if sweeps:
            query = query.where(t.c.file_id.is_(None))
        if due_for:
            waited = now - timedelta(seconds=due_for)
            query = query.where(or_(t.c.state == RUNNING, t.c.run_after <= waited))
        async with self.engines.reader.connect() as conn:
            return [row.id for row in await conn.execute(query)]

    async def count_runnable(self) -> int:
        """How many tasks a worker could claim now."""
        query = select(func.count()).select_from(t).where(runnable(utcnow()))
        async with self.engines.reader.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def fail_exhausted_leases(self) -> list[Task]:
        """Running tasks whose process died on their last attempt: failed for good."""
        now = utcnow()
        query = (
            update(t)
            .where(t.c.state == RUNNING, t.c.lease_until < now, t.c.attempts >= t.c.max_attempts)
            .values(
                state=FAILED,
                finished_at=now,
                lease_owner=None,
                error=func.coalesce(t.c.error, "the worker stopped while running this task"),
            )
            .returning(*t.c)
        )
        async with self.engines.write() as conn:
            failed = [task_of(r) for r in await conn.execute(query)]
            written = 0
            for file_id in {task.file_id for task in failed if task.file_id}:
                written += await refresh_status(conn, file_id, self.events)
        self.events.committed(written)
        return failed

    async def renew_leases(
        self, worker: str, task_ids: Sequence[int], lease_seconds: float
    ) -> None:
        if not task_ids:
            return
        until = utcnow() + timedelta(seconds=lease_seconds)
        async with self.engines.write() as conn:
            await conn.execute(
                update(t)
                .where(t.c.id.in_(task_ids), t.c.lease_owner == worker, t.c.state == RUNNING)
                .values(lease_until=until)
            )

    async def finish_task(self, task: Task, worker: str, state: str, error: str | None) -> bool:
        """End a run (succeeded, skipped or failed). ``False`` if the lease was lost meanwhile."""
        return await self._end_run(
            task, worker, state=state, error=error, finished_at=utcnow(), lease_until=None
        )

    async def requeue_task(
        self, task: Task, worker: str, delay: float, error: str | None, *, refund: bool = False
    ) -> bool:
        """Put a task back in the queue after ``delay`` seconds (a retry, or a shutdown)."""
        values: dict[str, Any] = {"run_after": utcnow() + timedelta(seconds=delay)}
        if refund:
            values["attempts"] = t.c.attempts - 1
        return await self._end_run(
            task, worker, state=QUEUED, error=error, lease_until=None, **values
        )

    async def _end_run(self, task: Task, worker: str, **values: Any) -> bool:
        async with self.engines.write() as conn:
            done = await conn.execute(
                update(t)
                .where(t.c.id == task.id, t.c.lease_owner == worker, t.c.state == RUNNING)
                .values(lease_owner=None, **values)
            )
            written = 0
            if task.file_id:
                written = await refresh_status(conn, task.file_id, self.events)
        self.events.committed(written)
        return done.rowcount > 0

    async def enqueue_sweep(self) -> bool:
        """Queue one sweep, unless one is already waiting."""
        now = utcnow()
        async with self.engines.write() as conn:
            if conn.dialect.name == "postgresql":
                # Check-then-insert: two processes must not both see "none queued".
                await conn.execute(select(func.pg_advisory_xact_lock(_SWEEP_LOCK)))
            pending = await conn.execute(
                select(t.c.id).where(
                    t.c.name == CLEANUP, t.c.file_id.is_(None), t.c.state.in_(ACTIVE_STATES)
                )
            )
            if pending.first() is not None:
                return False
            sweep = new_task_row(None, CLEANUP, now, {"sweep": True}, self.max_attempts)
            await conn.execute(insert(t), [sweep])
        return True

    async def queue_stats(self) -> tuple[int, float | None]:
        """Queued task count, and the age in seconds of the oldest one."""
        async with self.engines.reader.connect() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.min(t.c.created_at)).where(t.c.state == QUEUED)
                )
            ).one()
        oldest = (utcnow() - row[1]).total_seconds() if row[1] else None
        return int(row[0]), oldest
