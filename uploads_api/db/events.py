"""The outbox: events written inside the transaction of the change that caused them, with
one delivery row for each webhook endpoint that takes them.

A change that rolls back takes its event with it, and a committed change always has its
event, even if the process dies right after the commit: senders and the live stream read
what is committed, whenever they get to it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from uploads_api.db import tables
from uploads_api.db.models import FILE_FAILED, READY, FileRecord
from uploads_api.db.tables import utcnow

e = tables.events
endpoints = tables.webhook_endpoints
deliveries = tables.webhook_deliveries

FILE_CREATED, FILE_READY, FILE_FAILED_EVENT, FILE_DELETED = (
    "file.created",
    "file.ready",
    "file.failed",
    "file.deleted",
)
UPLOAD_EXPIRED = "upload.expired"
WEBHOOK_TEST = "webhook.test"
# What an endpoint may subscribe to, and what the live stream carries.
EVENT_TYPES = (FILE_CREATED, FILE_READY, FILE_FAILED_EVENT, FILE_DELETED, UPLOAD_EXPIRED)
# The event a file's status announces when it becomes final.
FINAL_STATUS_EVENTS = {READY: FILE_READY, FILE_FAILED: FILE_FAILED_EVENT}

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
DELIVERY_STATES = (PENDING, DELIVERED, DEAD)

# FileRecord -> the JSON the API answers for it; given by the composition root, so the
# payload is exactly the API's shape without this layer knowing the API.
RenderFile = Callable[[FileRecord], dict[str, Any]]


def new_event_id() -> str:
    return "msg_" + secrets.token_hex(12)


def rfc3339(moment: datetime) -> str:
    return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


class EventWriter:
    """Writes events in the caller's transaction. After that transaction commits, the
    caller calls ``committed(...)``, which wakes whatever sends or streams them."""

    def __init__(self, render: RenderFile) -> None:
        self.render = render
        self._on_events: list[Callable[[], None]] = []
        self._on_deliveries: list[Callable[[], None]] = []

    def subscribe(
        self,
        *,
        events: Callable[[], None] | None = None,
        deliveries: Callable[[], None] | None = None,
    ) -> None:
        if events is not None:
            self._on_events.append(events)
        if deliveries is not None:
            self._on_deliveries.append(deliveries)

    def committed(self, written: int) -> None:
        """Wake the listeners once a transaction that wrote ``written`` events committed."""
        if written:
            for wake in (*self._on_events, *self._on_deliveries):
                wake()

    async def file_events(
        self, conn: AsyncConnection, changes: Sequence[tuple[str, FileRecord]]
    ) -> int:
        """One event per (type, record), the record rendered as it is now (once, when it
        has two events: created and ready at once)."""
        return await conn.run_sync(self.file_events_sync, changes)

    def file_events_sync(self, conn: Connection, changes: Sequence[tuple[str, FileRecord]]) -> int:
        """``file_events`` in a transaction that runs in the driver's thread."""
        now = utcnow()
        stamp = rfc3339(now)
        rendered: dict[int, dict[str, Any]] = {}
        rows = []
        for kind, record in changes:
            data = rendered.get(id(record))
            if data is None:
                data = rendered[id(record)] = self.render(record)
            rows.append(
                {
                    "id": new_event_id(),
                    "type": kind,
                    "owner": record.owner,
                    "file_id": record.id,
                    "payload": {"type": kind, "timestamp": stamp, "data": data},
                    "created_at": now,
                }
            )
        return self.write_sync(conn, rows)

    async def write(
        self, conn: AsyncConnection, rows: list[dict[str, Any]], endpoint_id: str | None = None
    ) -> int:
        """Insert event rows and their deliveries: to ``endpoint_id`` only, when given, else
        to every enabled endpoint of the event's owner (or of every owner) taking its type."""
        return await conn.run_sync(self.write_sync, rows, endpoint_id)

    def write_sync(
        self, conn: Connection, rows: list[dict[str, Any]], endpoint_id: str | None = None
    ) -> int:
        """``write`` in a transaction that runs in the driver's thread."""
        if not rows:
            return 0
        conn.execute(insert(e), rows)
        query = select(endpoints.c.id, endpoints.c.owner, endpoints.c.events)
        if endpoint_id is not None:
            query = query.where(endpoints.c.id == endpoint_id)
        else:
            owners = {row["owner"] for row in rows if row["owner"] is not None}
            query = query.where(
                endpoints.c.enabled.is_(True),
                or_(endpoints.c.owner.is_(None), endpoints.c.owner.in_(owners)),
            )
        targets = list(conn.execute(query))
        if not targets:
            return len(rows)
        now = utcnow()
        new_deliveries = [
            {
                "endpoint_id": target.id,
                "event_id": row["id"],
                "type": row["type"],
                "state": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for row in rows
            for target in targets
            if endpoint_id is not None
            or (
                row["type"] in target.events
                and (target.owner is None or target.owner == row["owner"])
            )
        ]
        if new_deliveries:
            conn.execute(insert(deliveries), new_deliveries)
        return len(rows)
