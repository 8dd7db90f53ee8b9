"""File records: uploads with their tasks, reads, listing, delete and retry."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from uploads_api.db.engine import Engines
from uploads_api.db.events import FILE_CREATED, FILE_DELETED, FINAL_STATUS_EVENTS, EventWriter
from uploads_api.db.group_commit import GroupCommit
from uploads_api.db.idempotency import Completion, record_answer
from uploads_api.db.models import (
    CLEANUP,
    CURSOR_PATTERN,
    FAILED,
    PROCESSING,
    QUEUED,
    READY,
    RUNNING,
    FileRecord,
    NewFile,
    Task,
)
from uploads_api.db.rows import f, file_of, load_record, new_task_row, refresh_status, t, task_of
from uploads_api.db.tables import utcnow, variants
from uploads_api.db.usage import Quota, check_quota_in
from uploads_api.media.outputs import Thumbnail

# Rows per IN (...) list: two lists of them stay under SQLite's old limit of 999 parameters.
_IN_CHUNK = 400


_EPOCH = datetime(1970, 1, 1)


class InvalidCursor(ValueError):
    """A listing cursor that is not of the form ``CURSOR_PATTERN``."""


def encode_cursor(created_at: datetime, file_id: str) -> str:
    return f"{(created_at - _EPOCH) // timedelta(microseconds=1)}_{file_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if re.fullmatch(CURSOR_PATTERN, cursor) is None:
        raise InvalidCursor(cursor)
    micros, _, file_id = cursor.partition("_")
    return _EPOCH + timedelta(microseconds=int(micros)), file_id


@dataclass
class _NewRows:
    """One upload's rows, ready to insert."""

    files: list[dict[str, Any]]
    tasks: list[dict[str, Any]]


class FileRepository:
    def __init__(self, engines: Engines, events: EventWriter, *, max_attempts: int = 3) -> None:
        self.engines = engines
        self.events = events
        self.max_attempts = max_attempts
        self._file_inserts: GroupCommit[_NewRows, list[FileRecord]] = GroupCommit(
            lambda batch: engines.write_in_one_trip(self._insert_files, batch)
        )

    async def create_files(
        self,
        new_files: Sequence[NewFile],
        task_names: Sequence[str],
        quota: Quota | None = None,
        completion: Completion | None = None,
    ) -> list[FileRecord]:
        """Insert the files and their tasks in one transaction: all or nothing. A task a
        file names in ``settled`` is inserted finished; the rest are queued. Returns the
        records as committed.

        With a quota, the owner's usage is checked inside that transaction; with a
        ``completion``, the request's answer is recorded under its idempotency key there.
        Otherwise uploads arriving together share a transaction (``GroupCommit``)."""
        if not new_files:
            return []
        rows = self._new_file_rows(new_files, task_names)
        if quota is None and completion is None:
            records = await self._file_inserts.submit(rows)
        else:
            # Their own transaction: a refusal here (quota, a lost key) fails this upload
            # alone, where in a group it would fail every upload of the group.
            def insert_checked(conn: Connection) -> list[FileRecord]:
                if quota is not None:
                    size = sum(nf.size for nf in new_files)
                    check_quota_in(conn, quota, size, len(new_files))
                (records,) = self._insert_files(conn, [rows])
                if completion is not None:
                    record_answer(conn, completion, records)
                return records

            records = await self.engines.write_in_one_trip(insert_checked)
        self.events.committed(len(records))
        return records

    def _new_file_rows(self, new_files: Sequence[NewFile], task_names: Sequence[str]) -> _NewRows:
        now = utcnow()
        rows = _NewRows([], [])
        for i, nf in enumerate(new_files):
            queued = False
            for name in task_names:
                row = new_task_row(nf.id, name, now, nf.task_payloads.get(name), self.max_attempts)
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
                    "received_sha256": nf.received_sha256 or nf.sha256,
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

    def _insert_files(self, conn: Connection, uploads: list[_NewRows]) -> list[list[FileRecord]]:
        """Several uploads' rows in two statements; each upload's records, in order. Runs
        in the driver's thread (``Engines.write_in_one_trip``)."""
        file_rows = [row for rows in uploads for row in rows.files]
        task_rows = [row for rows in uploads for row in rows.tasks]
        conn.execute(insert(f), file_rows)
        by_file: dict[str, list[Task]] = {}
        if task_rows:
            inserted = conn.execute(
                insert(t).returning(*t.c, sort_by_parameter_order=True), task_rows
            )
            for task in (task_of(row) for row in inserted):
                by_file.setdefault(task.file_id or "", []).append(task)
        records = [
            [file_of(row, by_file.get(row["id"], [])) for row in rows.files] for rows in uploads
        ]
        changes: list[tuple[str, FileRecord]] = []
        for record in (record for batch in records for record in batch):
            changes.append((FILE_CREATED, record))
            if record.status in FINAL_STATUS_EVENTS:
                changes.append((FINAL_STATUS_EVENTS[record.status], record))
        self.events.file_events_sync(conn, changes)
        return records

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
        return file_of(row, by_file.get(file_id, []))

    async def list_files(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        status: str | None = None,
        sha256: str | None = None,
        scope: str | None = None,
    ) -> tuple[list[FileRecord], str | None]:
        """A page, newest first; raises ``InvalidCursor`` for a cursor not made here."""
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
            # Either hash: a rerun of a batch finds files whose metadata was stripped.
            wanted = sha256.lower()
            query = query.where(or_(f.c.sha256 == wanted, f.c.received_sha256 == wanted))
        async with self.engines.reader.connect() as conn:
            rows = list((await conn.execute(query)).all())
            page, more = rows[:limit], len(rows) > limit
            by_file = await self._tasks_of(conn, [r.id for r in page])
        records = [file_of(r, by_file.get(r.id, [])) for r in page]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
        return records, next_cursor

    async def _tasks_of(self, conn: AsyncConnection, file_ids: list[str]) -> dict[str, list[Task]]:
        if not file_ids:
            return {}
        rows = await conn.execute(select(t).where(t.c.file_id.in_(file_ids)).order_by(t.c.id))
        grouped: dict[str, list[Task]] = {}
        for row in rows:
            grouped.setdefault(row.file_id, []).append(task_of(row))
        return grouped

    async def present_hashes(self, hashes: Sequence[str], scope: str | None = None) -> set[str]:
        """Which of ``hashes`` already have a file (of the owner ``scope``, when given), by
        the stored bytes' hash or the received bytes' one."""
        found: set[str] = set()
        async with self.engines.reader.connect() as conn:
            for start in range(0, len(hashes), _IN_CHUNK):
                chunk = hashes[start : start + _IN_CHUNK]
                query = select(f.c.sha256, f.c.received_sha256).where(
                    or_(f.c.sha256.in_(chunk), f.c.received_sha256.in_(chunk))
                )
                if scope is not None:
                    query = query.where(f.c.owner == scope)
                for row in await conn.execute(query):
                    found.update(h for h in (row.sha256, row.received_sha256) if h in chunk)
        return found

    async def existing_file_ids(self, file_ids: Iterable[str]) -> set[str]:
        ids = list(file_ids)
        found: set[str] = set()
        async with self.engines.reader.connect() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                rows = await conn.execute(select(f.c.id).where(f.c.id.in_(chunk)))
                found.update(r.id for r in rows)
        return found

    async def delete_file(self, file_id: str, cleanup_payload: dict[str, Any]) -> bool:
        """Drop the record, its pending tasks and its variants' rows; queue a cleanup of its
        bytes (variants included). One transaction."""
        now = utcnow()
        async with self.engines.write() as conn:
            record = await load_record(conn, file_id)
            gone = await conn.execute(delete(f).where(f.c.id == file_id))
            if record is None or gone.rowcount == 0:
                return False
            await conn.execute(delete(t).where(t.c.file_id == file_id, t.c.state != RUNNING))
            await conn.execute(delete(variants).where(variants.c.file_id == file_id))
            cleanup = new_task_row(file_id, CLEANUP, now, cleanup_payload, self.max_attempts)
            await conn.execute(insert(t), [cleanup])
            written = await self.events.file_events(conn, [(FILE_DELETED, record)])
        self.events.committed(written)
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

    async def record_hash(self, file_id: str, sha256: str, verified: bool) -> None:
        """A direct upload's hash, read back from storage by its verify task."""
        async with self.engines.write() as conn:
            current = (
                await conn.execute(select(f.c.metadata).where(f.c.id == file_id).with_for_update())
            ).first()
            if current is None:
                return  # deleted meanwhile
            await conn.execute(
                update(f)
                .where(f.c.id == file_id)
                .values(
                    sha256=sha256,
                    received_sha256=sha256,
                    verified=verified,
                    metadata={**(current.metadata or {}), "sha256": sha256},
                )
            )

    async def set_thumbnails(
        self, file_id: str, thumbnails: Sequence[Thumbnail], metadata_fields: dict[str, Any]
    ) -> bool:
        """Record the thumbnails and add ``metadata_fields`` in one write, so no reader sees
        one without the other; ``False`` when the file was deleted meanwhile."""
        stored = [thumb.to_json() for thumb in thumbnails]
        async with self.engines.write() as conn:
            current = await conn.execute(
                select(f.c.metadata).where(f.c.id == file_id).with_for_update()
            )
            row = current.first()
            if row is None:
                return False
            merged = {**(row.metadata or {}), **metadata_fields}
            await conn.execute(
                update(f).where(f.c.id == file_id).values(thumbnails=stored, metadata=merged)
            )
        return True

    async def retry_file(self, file_id: str) -> int:
        """Queue the failed tasks of one file again, with a fresh attempt budget."""
        now = utcnow()
        again = {"state": QUEUED, "attempts": 0, "error": None, "run_after": now}
        async with self.engines.write() as conn:
            done = await conn.execute(
                update(t)
                .where(t.c.file_id == file_id, t.c.state == FAILED)
                .values(**again, finished_at=None)
            )
            if done.rowcount:
                # The retried run leaves scratch files too: clean up after it again.
                await conn.execute(
                    update(t)
                    .where(t.c.file_id == file_id, t.c.name == CLEANUP, t.c.state != RUNNING)
                    .values(**again, finished_at=None)
                )
            written = await refresh_status(conn, file_id, self.events)
        self.events.committed(written)
        return done.rowcount
