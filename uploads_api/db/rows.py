"""What the file and queue repositories share: row mapping, new task rows, file status."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from uploads_api.db import tables
from uploads_api.db.events import FINAL_STATUS_EVENTS, EventWriter
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
    Task,
)
from uploads_api.media.outputs import Thumbnail

f = tables.files
t = tables.tasks


def task_of(row: Row[Any]) -> Task:
    return Task(**row._mapping)


def file_of(row: Row[Any] | Mapping[str, Any], file_tasks: list[Task]) -> FileRecord:
    data = dict(row._mapping if isinstance(row, Row) else row)
    data["thumbnails"] = [Thumbnail.from_json(thumb) for thumb in data["thumbnails"] or ()]
    return FileRecord(**data, tasks=file_tasks)


def new_task_row(
    file_id: str | None,
    name: str,
    now: datetime,
    payload: dict[str, Any] | None,
    max_attempts: int,
) -> dict[str, Any]:
    return {
        "file_id": file_id,
        "name": name,
        "state": QUEUED,
        "attempts": 0,
        "max_attempts": max_attempts,
        "error": None,
        "payload": payload,
        "created_at": now,
        "run_after": now,
        "finished_at": None,
    }


def runnable(now: datetime) -> Any:
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


async def load_record(conn: AsyncConnection, file_id: str) -> FileRecord | None:
    """The file with its tasks, as the caller's transaction sees it."""
    row = (await conn.execute(select(f).where(f.c.id == file_id))).first()
    if row is None:
        return None
    file_tasks = await conn.execute(select(t).where(t.c.file_id == file_id).order_by(t.c.id))
    return file_of(row, [task_of(task) for task in file_tasks])


async def refresh_status(conn: AsyncConnection, file_id: str, events: EventWriter) -> int:
    """Derive the file's status from its tasks, inside the caller's transaction; a status
    that just became final writes its event. Returns the number of events written."""
    status = _status_expression(file_id)
    changed = await conn.execute(
        update(f)
        .where(f.c.id == file_id, f.c.status != status)
        .values(status=status)
        .returning(f.c.status)
    )
    now = changed.scalar()
    if now not in FINAL_STATUS_EVENTS:
        return 0
    record = await load_record(conn, file_id)
    if record is None:
        return 0
    return await events.file_events(conn, [(FINAL_STATUS_EVENTS[now], record)])
