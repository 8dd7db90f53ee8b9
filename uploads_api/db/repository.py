"""The repository: every query the service makes, on SQLite or PostgreSQL alike."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from uploads_api.db import tables
from uploads_api.db.engine import Engines
from uploads_api.db.group_commit import GroupCommit
from uploads_api.db.models import (
    ACTIVE_STATES,
    CLEANUP,
    FAILED,
    FILE_FAILED,
    PROCESSING,
    QUEUED,
    READY,
    RUNNING,
    FileRecord,
    NewFile,
    Quota,
    Task,
)

_SWEEP_LOCK = 0x7377_6570  # any fixed number, private to enqueue_sweep

f = tables.files
t = tables.tasks


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _task(row: Row[Any]) -> Task:
    return Task(**row._mapping)


def _file(row: Row[Any] | Mapping[str, Any], file_tasks: list[Task]) -> FileRecord:
    data = dict(row._mapping if isinstance(row, Row) else row)
    data["thumbnails"] = data["thumbnails"] or []
    return FileRecord(**data, tasks=file_tasks)


def encode_cursor(created_at: datetime, file_id: str) -> str:
    raw = f"{created_at.isoformat()}|{file_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    padded = cursor + "=" * (-len(cursor) % 4)
    when, _, file_id = base64.urlsafe_b64decode(padded).decode().partition("|")
    return datetime.fromisoformat(when), file_id


def _runnable(now: datetime) -> Any:
    """Queued and due, or running on a lapsed lease; a file's cleanup waits for the rest."""
    sibling = t.alias("sibling")
    busy_siblings = exists().where(
        sibling.c.file_id == t.c.file_id,
        sibling.c.name != CLEANUP,
        sibling.c.state.in_(ACTIVE_STATES),
    )
    return and_(
        or_(
            and_(t.c.state == QUEUED, t.c.run_after <= now),
            and_(t.c.state == RUNNING, t.c.lease_until < now),
        ),
        t.c.attempts < t.c.max_attempts,
        or_(t.c.name != CLEANUP, t.c.file_id.is_(None), ~busy_siblings),
    )


def _status_expression(file_id: Any) -> Any:
    """A file is processing while any task is queued or running, failed if any failed."""
    active = exists().where(t.c.file_id == file_id, t.c.state.in_(ACTIVE_STATES))
    failed = exists().where(t.c.file_id == file_id, t.c.state == FAILED)
    return case((active, PROCESSING), (failed, FILE_FAILED), else_=READY)


@dataclass
class _NewRows:
    """One upload's rows, ready to insert."""

    files: list[dict[str, Any]]
    tasks: list[dict[str, Any]]


class Repository:
    def __init__(self, engines: Engines, *, max_attempts: int = 3) -> None:
        self.engines = engines
        self.max_attempts = max_attempts
        self._file_inserts = GroupCommit(engines.write, self._insert_files)

    # Files -------------------------------------------------------------------------------

    async def create_files(
        self,
        new_files: Sequence[NewFile],
        task_names: Sequence[str],
        quota: Quota | None = None,
    ) -> list[FileRecord]:
        """Insert the files and their tasks in one transaction: all or nothing. A task a
        file names in ``settled`` is inserted finished; the rest are queued. Returns the
        records as committed.

        With a quota, the owner's usage is checked inside that transaction, so two uploads
        racing each other cannot both slip under it. Without one, uploads arriving together
        share a transaction (``GroupCommit``)."""
        if not new_files:
            return []
        rows = self._new_file_rows(new_files, task_names)
        if quota is None:
            return await self._file_inserts.submit(rows)
        async with self.engines.write() as conn:
            if conn.dialect.name == "postgresql":
                # READ COMMITTED lets two uploads read the same usage; serialise per owner.
                lock_key = func.hashtext(quota.owner or "")
                await conn.execute(select(func.pg_advisory_xact_lock(lock_key)))
            used_bytes, used_files = await self._usage(conn, quota.owner)
            quota.check(used_bytes + sum(nf.size for nf in new_files), used_files + len(new_files))
            (records,) = await self._insert_files(conn, [rows])
        return records

    def _new_file_rows(self, new_files: Sequence[NewFile], task_names: Sequence[str]) -> _NewRows:
        now = utcnow()
        rows = _NewRows([], [])
        for i, nf in enumerate(new_files):
            queued = False
            for name in task_names:
                row = self._new_task_row(nf.id, name, now, None)
                if name in nf.settled:
                    row["state"], row["error"] = nf.settled[name]
                    row["finished_at"] = now
                else:
                    queued = True
                rows.tasks.append(row)
            rows.files.append(
                {
                    "id": nf.id,
                    "owner": nf.owner,
                    "filename": nf.filename,
                    "content_type": nf.content_type,
                    "size": nf.size,
                    "sha256": nf.sha256,
                    "storage_key": nf.storage_key,
                    # Distinct timestamps keep part order in the newest-first listing.
                    "created_at": now + timedelta(microseconds=i),
                    "status": PROCESSING if queued else READY,
                    "verified": nf.verified,
                    "metadata": nf.metadata,
                    "thumbnails": [],
                }
            )
        return rows

    async def _insert_files(
        self, conn: AsyncConnection, uploads: list[_NewRows]
    ) -> list[list[FileRecord]]:
        """Several uploads' rows in two statements; each upload's records, in order."""
        file_rows = [row for rows in uploads for row in rows.files]
        task_rows = [row for rows in uploads for row in rows.tasks]
        await conn.execute(insert(f), file_rows)
        by_file: dict[str, list[Task]] = {}
        if task_rows:
            inserted = await conn.execute(
                insert(t).returning(*t.c, sort_by_parameter_order=True), task_rows
            )
            for task in (_task(row) for row in inserted):
                by_file.setdefault(task.file_id or "", []).append(task)
        return [[_file(row, by_file.get(row["id"], [])) for row in rows.files] for rows in uploads]

    def _new_task_row(
        self, file_id: str | None, name: str, now: datetime, payload: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {
            "file_id": file_id,
            "name": name,
            "state": QUEUED,
            "attempts": 0,
            "max_attempts": self.max_attempts,
            "error": None,
            "payload": payload,
            "created_at": now,
            "run_after": now,
            "finished_at": None,
        }

    async def usage(self, owner: str | None) -> tuple[int, int]:
        """Bytes and files an owner has stored."""
        async with self.engines.reader.connect() as conn:
            return await self._usage(conn, owner)

    async def _usage(self, conn: AsyncConnection, owner: str | None) -> tuple[int, int]:
        query = select(func.coalesce(func.sum(f.c.size), 0), func.count()).where(
            f.c.owner.is_(None) if owner is None else f.c.owner == owner
        )
        used_bytes, used_files = (await conn.execute(query)).one()
        return int(used_bytes), int(used_files)

    async def get_file(self, file_id: str, scope: str | None = None) -> FileRecord | None:
        """The file, if it exists and ``scope`` (an owner; ``None`` for all) may see it."""
        query = select(f).where(f.c.id == file_id)
        if scope is not None:
            query = query.where(f.c.owner == scope)
        async with self.engines.reader.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            by_file = await self._tasks_of(conn, [file_id])
        return _file(row, by_file.get(file_id, []))

    async def get_files(self, file_ids: Sequence[str]) -> list[FileRecord]:
        """Several records, in the order of ``file_ids`` (missing ones left out)."""
        async with self.engines.reader.connect() as conn:
            rows = {r.id: r for r in await conn.execute(select(f).where(f.c.id.in_(file_ids)))}
            by_file = await self._tasks_of(conn, list(rows))
        return [_file(rows[i], by_file.get(i, [])) for i in file_ids if i in rows]

    async def file_status(self, file_id: str) -> str | None:
        async with self.engines.reader.connect() as conn:
            return (await conn.execute(select(f.c.status).where(f.c.id == file_id))).scalar()

    async def list_files(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        status: str | None = None,
        sha256: str | None = None,
        scope: str | None = None,
    ) -> tuple[list[FileRecord], str | None]:
        query = select(f).order_by(f.c.created_at.desc(), f.c.id.desc()).limit(limit + 1)
        if scope is not None:
            query = query.where(f.c.owner == scope)
        if cursor:
            when, last_id = decode_cursor(cursor)
            query = query.where(
                or_(f.c.created_at < when, and_(f.c.created_at == when, f.c.id < last_id))
            )
        if status:
            query = query.where(f.c.status == status)
        if sha256:
            query = query.where(f.c.sha256 == sha256.lower())
        async with self.engines.reader.connect() as conn:
            rows = list((await conn.execute(query)).all())
            page, more = rows[:limit], len(rows) > limit
            by_file = await self._tasks_of(conn, [r.id for r in page])
        records = [_file(r, by_file.get(r.id, [])) for r in page]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
        return records, next_cursor

    async def _tasks_of(self, conn: AsyncConnection, file_ids: list[str]) -> dict[str, list[Task]]:
        if not file_ids:
            return {}
        rows = await conn.execute(select(t).where(t.c.file_id.in_(file_ids)).order_by(t.c.id))
        grouped: dict[str, list[Task]] = {}
        for row in rows:
            grouped.setdefault(row.file_id, []).append(_task(row))
        return grouped

    async def present_hashes(self, hashes: Sequence[str], scope: str | None = None) -> set[str]:
        """Which of ``hashes`` already have a file (of the owner ``scope``, when given)."""
        found: set[str] = set()
        async with self.engines.reader.connect() as conn:
            for start in range(0, len(hashes), 500):
                query = select(f.c.sha256).where(f.c.sha256.in_(hashes[start : start + 500]))
                if scope is not None:
                    query = query.where(f.c.owner == scope)
                found.update(r.sha256 for r in await conn.execute(query.distinct()))
        return found

    async def delete_file(self, file_id: str, cleanup_payload: dict[str, Any]) -> bool:
        """Drop the record and its pending tasks; queue a cleanup of its bytes. One transaction."""
        now = utcnow()
        async with self.engines.write() as conn:
            gone = await conn.execute(delete(f).where(f.c.id == file_id))
            if gone.rowcount == 0:
                return False
            await conn.execute(delete(t).where(t.c.file_id == file_id, t.c.state != RUNNING))
            await conn.execute(
                insert(t), [self._new_task_row(file_id, CLEANUP, now, cleanup_payload)]
            )
        return True

    async def merge_metadata(self, file_id: str, fields: dict[str, Any]) -> None:
        """Add ``fields`` to the file's metadata. Read and write share one write transaction,
        so two tasks adding different fields never lose each other's."""
        async with self.engines.write() as conn:
            current = (
                await conn.execute(select(f.c.metadata).where(f.c.id == file_id).with_for_update())
            ).scalar()
            merged = {**(current or {}), **fields}
            await conn.execute(update(f).where(f.c.id == file_id).values(metadata=merged))

    async def set_thumbnails(
        self, file_id: str, thumbnails: list[dict[str, Any]], metadata_fields: dict[str, Any]
    ) -> bool:
        """Record the thumbnails and add ``metadata_fields`` in one write, so no reader sees
        one without the other; ``False`` when the file was deleted meanwhile."""
        async with self.engines.write() as conn:
            current = await conn.execute(
                select(f.c.metadata).where(f.c.id == file_id).with_for_update()
            )
            row = current.first()
            if row is None:
                return False
            merged = {**(row.metadata or {}), **metadata_fields}
            await conn.execute(
                update(f).where(f.c.id == file_id).values(thumbnails=thumbnails, metadata=merged)
            )
        return True

    async def file_exists(self, file_id: str) -> bool:
        async with self.engines.reader.connect() as conn:
            found = await conn.execute(select(f.c.id).where(f.c.id == file_id))
            return found.first() is not None

    async def existing_file_ids(self, file_ids: Iterable[str]) -> set[str]:
        ids = list(file_ids)
        found: set[str] = set()
        async with self.engines.reader.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = await conn.execute(select(f.c.id).where(f.c.id.in_(chunk)))
                found.update(r.id for r in rows)
        return found

    async def retry_file(self, file_id: str) -> int:
        """Queue the failed tasks of one file again, with a fresh attempt budget."""
        now = utcnow()
        async with self.engines.write() as conn:
            done = await conn.execute(
                update(t)
                .where(t.c.file_id == file_id, t.c.state == FAILED)
                .values(state=QUEUED, attempts=0, error=None, run_after=now, finished_at=None)
            )
            if done.rowcount:
                # The retried run leaves scratch files too: clean up after it again.
                await conn.execute(
                    update(t)
                    .where(t.c.file_id == file_id, t.c.name == CLEANUP, t.c.state != RUNNING)
                    .values(state=QUEUED, attempts=0, error=None, run_after=now, finished_at=None)
                )
            await self._refresh_status(conn, file_id)
        return done.rowcount

    # Tasks -------------------------------------------------------------------------------

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
            return [_task(r) for r in await conn.execute(query)]

    async def claim_tasks(
        self, worker: str, limit: int, lease_seconds: float, task_id: int | None = None
    ) -> list[Task]:
        """Atomically take up to ``limit`` runnable tasks (or the one ``task_id``, if it is
        runnable): queued and due, or running with a lapsed lease (their process died).
        Cleanup of a file waits for its other tasks."""
        now = utcnow()
        runnable = select(t.c.id).where(_runnable(now))
        if task_id is not None:
            runnable = runnable.where(t.c.id == task_id)
        runnable = (
            runnable.order_by(t.c.run_after, t.c.id).limit(limit).with_for_update(skip_locked=True)
        )
        claim = (
            update(t)
            .where(t.c.id.in_(runnable.scalar_subquery()))
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
                (_task(r) for r in await conn.execute(claim)), key=lambda t: (t.run_after, t.id)
            )
            for file_id in {task.file_id for task in claimed if task.file_id}:
                await self._refresh_status(conn, file_id)
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
        query = select(t.c.id).where(_runnable(now)).order_by(t.c.run_after, t.c.id).limit(limit)
        if file_ids is not None:
            query = query.where(t.c.file_id.in_(file_ids))
        if sweeps:
            query = query.where(t.c.file_id.is_(None))
        if due_for:
            waited = now - timedelta(seconds=due_for)
            query = query.where(or_(t.c.state == RUNNING, t.c.run_after <= waited))
        async with self.engines.reader.connect() as conn:
            return [row.id for row in await conn.execute(query)]

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
            failed = [_task(r) for r in await conn.execute(query)]
            for file_id in {task.file_id for task in failed if task.file_id}:
                await self._refresh_status(conn, file_id)
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
            if task.file_id:
                await self._refresh_status(conn, task.file_id)
        return done.rowcount > 0

    async def _refresh_status(self, conn: AsyncConnection, file_id: str) -> None:
        await conn.execute(
            update(f).where(f.c.id == file_id).values(status=_status_expression(file_id))
        )

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
            await conn.execute(insert(t), [self._new_task_row(None, CLEANUP, now, {"sweep": True})])
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

    async def ping(self) -> None:
        async with self.engines.reader.connect() as conn:
            await conn.execute(select(1))
