"""The audit log: rows written in batches, failed authentications merged into their
address's row of the minute, pages newest first, and removal of old rows."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from uploads_api.db.engine import Engines
from uploads_api.db.models import AUDIT_CURSOR_PATTERN, AUTH_FAILED, AuditEntry
from uploads_api.db.tables import audit_log as a

_EPOCH = datetime(1970, 1, 1)
_MINUTE = timedelta(minutes=1)
# Addresses per IN (...) list: under SQLite's old limit of 999 parameters.
_IN_CHUNK = 400
# Rows per delete transaction: a sweep after a long pause never holds the writer for long.
_DELETE_CHUNK = 5000
_MERGE_LOCK = 0x6175_6474  # any fixed number, private to the failed-auth merge


class InvalidAuditCursor(ValueError):
    """An audit cursor that is not of the form ``AUDIT_CURSOR_PATTERN``."""


@dataclass(frozen=True)
class AuditFilter:
    """Which rows a page holds; ``since`` inclusive, ``until`` exclusive, both naive UTC."""

    owner: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def encode_cursor(entry: AuditEntry) -> str:
    return f"{(entry.at - _EPOCH) // timedelta(microseconds=1)}_{entry.id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    if re.fullmatch(AUDIT_CURSOR_PATTERN, cursor) is None:
        raise InvalidAuditCursor(cursor)
    micros, _, row_id = cursor.partition("_")
    return _EPOCH + timedelta(microseconds=int(micros)), int(row_id)


def _row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": entry.at,
        "action": entry.action,
        "owner": entry.owner,
        "file_id": entry.file_id,
        "address": entry.address,
        "detail": entry.detail,
        "count": entry.count,
    }


class AuditRepository:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def write(self, entries: Sequence[AuditEntry]) -> None:
        """Store the entries in one transaction. A failed authentication is added to the
        row of its address and minute when one exists (another process's, an earlier
        batch's), else inserted: at most one such row per address per minute."""
        plain = [_row(e) for e in entries if e.action != AUTH_FAILED]
        failures = [e for e in entries if e.action == AUTH_FAILED]
        if not plain and not failures:
            return
        async with self.engines.write() as conn:
            if plain:
                await conn.execute(insert(a), plain)
            if failures:
                await self._merge_failures(conn, failures)

    async def _merge_failures(self, conn: AsyncConnection, failures: list[AuditEntry]) -> None:
        if conn.dialect.name == "postgresql":
            # Find-then-insert: two processes must not both find no row for a minute.
            # (SQLite: write transactions of every process already take turns.)
            await conn.execute(select(func.pg_advisory_xact_lock(_MERGE_LOCK)))
        tallies: dict[tuple[str | None, datetime], AuditEntry] = {}
        for entry in failures:
            key = (entry.address, minute_of(entry.at))
            known = tallies.get(key)
            tallies[key] = entry if known is None else known.counted_with(entry)
        minutes = [minute for _, minute in tallies]
        window = and_(
            a.c.action == AUTH_FAILED, a.c.at >= min(minutes), a.c.at < max(minutes) + _MINUTE
        )
        addresses = sorted({address for address, _ in tallies if address is not None})
        conditions = [
            a.c.address.in_(addresses[start : start + _IN_CHUNK])
            for start in range(0, len(addresses), _IN_CHUNK)
        ]
        if any(address is None for address, _ in tallies):
            conditions.append(a.c.address.is_(None))
        found: dict[tuple[str | None, datetime], int] = {}
        for condition in conditions:
            query = select(a.c.id, a.c.address, a.c.at).where(window, condition).order_by(a.c.id)
            for row in await conn.execute(query):
                found.setdefault((row.address, minute_of(row.at)), row.id)
        updates = [{"row_id": found[k], "more": e.count} for k, e in tallies.items() if k in found]
        if updates:
            await conn.execute(
                update(a)
                .where(a.c.id == bindparam("row_id"))
                .values(count=a.c.count + bindparam("more")),
                updates,
            )
        inserts = [_row(e) for k, e in tallies.items() if k not in found]
        if inserts:
            await conn.execute(insert(a), inserts)

    async def list_entries(
        self, filters: AuditFilter, *, limit: int, cursor: str | None = None
    ) -> tuple[list[AuditEntry], str | None]:
        """A page, newest first, and the next page's cursor; raises ``InvalidAuditCursor``
        for a cursor not of the form this hands out."""
        query = select(a).order_by(a.c.at.desc(), a.c.id.desc()).limit(limit + 1)
        if filters.owner is not None:
            query = query.where(a.c.owner == filters.owner)
        if filters.action is not None:
            query = query.where(a.c.action == filters.action)
        if filters.since is not None:
            query = query.where(a.c.at >= filters.since)
        if filters.until is not None:
            query = query.where(a.c.at < filters.until)
        if cursor is not None:
            when, last_id = decode_cursor(cursor)
            query = query.where(or_(a.c.at < when, and_(a.c.at == when, a.c.id < last_id)))
        async with self.engines.reader.connect() as conn:
            rows = [AuditEntry(**row._mapping) for row in await conn.execute(query)]
        page = rows[:limit]
        return page, encode_cursor(page[-1]) if len(rows) > limit else None

    async def delete_before(self, cutoff: datetime) -> int:
        """Remove rows older than ``cutoff`` (naive UTC), a chunk per transaction; how many."""
        removed = 0
        while True:
            oldest = select(a.c.id).where(a.c.at < cutoff).limit(_DELETE_CHUNK)
            async with self.engines.write() as conn:
                done = await conn.execute(delete(a).where(a.c.id.in_(oldest.scalar_subquery())))
            removed += done.rowcount
            if done.rowcount < _DELETE_CHUNK:
                return removed
