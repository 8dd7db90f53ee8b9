"""Webhook deliveries: claimed with a lease by a sender, each attempt's outcome recorded,
listed per endpoint, retried by hand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, or_, select, update
from sqlalchemy.engine import Row

from uploads_api.db.engine import Engines
from uploads_api.db.events import (
    DEAD,
    DELIVERED,
    PENDING,
    WEBHOOK_TEST,
    EventWriter,
    new_event_id,
    rfc3339,
)
from uploads_api.db.tables import events, utcnow, webhook_deliveries, webhook_endpoints

d = webhook_deliveries
w = webhook_endpoints
e = events


@dataclass(frozen=True)
class Delivery:
    id: int
    endpoint_id: str
    event_id: str
    type: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    lease_until: datetime | None
    last_status: int | None
    last_error: str | None
    last_response: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Outgoing:
    """A claimed delivery with what sending it takes."""

    delivery: Delivery
    url: str
    secret: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """An attempt, and when to try again (``None``: never, unless it was delivered)."""

    delivery: Delivery
    attempt: Attempt
    retry_in: float | None


@dataclass(frozen=True)
class Attempt:
    """How one attempt went: the status (``None`` when no answer came), an error."""

    status: int | None
    error: str | None
    response: str | None


def _due(now: Any) -> ColumnElement[bool]:
    """Pending, and its next attempt is due at ``now`` (a time or a bound parameter)."""
    return and_(d.c.state == PENDING, d.c.next_attempt_at <= now)


# Whether any delivery waits at all: a read, where a claim is a write transaction. Every
# commit that writes an event wakes the sender, deliveries or not, so under a burst of
# uploads with no endpoint this is what it runs, several times a second.
_ANY_DUE = select(d.c.id).where(_due(bindparam("now"))).limit(1)


def delivery_of(row: Row[Any]) -> Delivery:
    return Delivery(**{column.name: row._mapping[column.name] for column in d.columns})


class DeliveryRepository:
    def __init__(self, engines: Engines, events: EventWriter) -> None:
        self.engines = engines
        self.events = events

    async def send_test(self, endpoint_id: str, owner: str | None) -> Delivery:
        """A ``webhook.test`` event for this endpoint alone, and its delivery."""
        now = utcnow()
        event = {
            "id": new_event_id(),
            "type": WEBHOOK_TEST,
            "owner": owner,
            "file_id": None,
            "payload": {
                "type": WEBHOOK_TEST,
                "timestamp": rfc3339(now),
                "data": {"endpoint_id": endpoint_id},
            },
            "created_at": now,
        }
        async with self.engines.write() as conn:
            await self.events.write(conn, [event], endpoint_id=endpoint_id)
            row = (
                await conn.execute(
                    select(d).where(d.c.event_id == event["id"], d.c.endpoint_id == endpoint_id)
                )
            ).one()
        self.events.committed(1)
        return delivery_of(row)

    async def claim_due(self, limit: int, lease_seconds: float) -> list[Outgoing]:
        """Take up to ``limit`` pending deliveries that are due, of enabled endpoints: each
        leased, so another sender skips it until it lapses (its sender died)."""
        now = utcnow()
        async with self.engines.reader.connect() as conn:
            if (await conn.execute(_ANY_DUE, {"now": now})).first() is None:
                return []
        due = (
            select(d.c.id)
            .where(
                _due(now),
                or_(d.c.lease_until.is_(None), d.c.lease_until < now),
                d.c.endpoint_id.in_(select(w.c.id).where(w.c.enabled.is_(True))),
            )
            .order_by(d.c.next_attempt_at, d.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(d)
            .where(d.c.id.in_(due.scalar_subquery()))
            .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
            .returning(*d.c)
        )
        async with self.engines.write() as conn:
            claimed = [delivery_of(row) for row in await conn.execute(claim)]
            if not claimed:
                return []
            targets = {
                row.id: row
                for row in await conn.execute(
                    select(w.c.id, w.c.url, w.c.secret).where(
                        w.c.id.in_({c.endpoint_id for c in claimed})
                    )
                )
            }
            payloads = {
                row.id: row.payload
                for row in await conn.execute(
                    select(e.c.id, e.c.payload).where(e.c.id.in_({c.event_id for c in claimed}))
                )
            }
        return [
            Outgoing(
                c, targets[c.endpoint_id].url, targets[c.endpoint_id].secret, payloads[c.event_id]
            )
            for c in sorted(claimed, key=lambda c: c.id)
            if c.endpoint_id in targets and c.event_id in payloads
        ]

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Attempts' outcomes, in one transaction: delivered on a 2xx; else pending again
        in ``retry_in`` seconds, or dead when that is ``None``."""
        if not outcomes:
            return
        now = utcnow()
        rows = []
        for outcome in outcomes:
            status = outcome.attempt.status
            if status is not None and 200 <= status < 300:
                state, next_at = DELIVERED, None
            elif outcome.retry_in is None:
                state, next_at = DEAD, None
            else:
                state, next_at = PENDING, now + timedelta(seconds=outcome.retry_in)
            rows.append(
                {
                    "b_id": outcome.delivery.id,
                    "b_state": state,
                    "b_next": next_at,
                    "b_status": status,
                    "b_error": outcome.attempt.error,
                    "b_response": outcome.attempt.response,
                }
            )
        statement = (
            update(d)
            .where(d.c.id == bindparam("b_id"))
            .values(
                state=bindparam("b_state"),
                attempts=d.c.attempts + 1,
                next_attempt_at=bindparam("b_next"),
                lease_until=None,
                last_status=bindparam("b_status"),
                last_error=bindparam("b_error"),
                last_response=bindparam("b_response"),
                updated_at=now,
            )
        )
        async with self.engines.write() as conn:
            await conn.execute(statement, rows)

    async def list_deliveries(
        self, endpoint_id: str, *, state: str | None, limit: int, before: int | None
    ) -> list[Delivery]:
        """Newest first."""
        query = select(d).where(d.c.endpoint_id == endpoint_id).order_by(d.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(d.c.state == state)
        if before is not None:
            query = query.where(d.c.id < before)
        async with self.engines.reader.connect() as conn:
            return [delivery_of(row) for row in await conn.execute(query)]

    async def get(self, endpoint_id: str, delivery_id: int) -> Delivery | None:
        query = select(d).where(d.c.id == delivery_id, d.c.endpoint_id == endpoint_id)
        async with self.engines.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return delivery_of(row) if row is not None else None

    async def retry(self, endpoint_id: str, delivery_id: int) -> Delivery | None:
        """Send again now, with the whole schedule ahead of it (attempts start over)."""
        now = utcnow()
        async with self.engines.write() as conn:
            await conn.execute(
                update(d)
                .where(d.c.id == delivery_id, d.c.endpoint_id == endpoint_id)
                .values(
                    state=PENDING, attempts=0, next_attempt_at=now, lease_until=None, updated_at=now
                )
            )
            row = (
                await conn.execute(
                    select(d).where(d.c.id == delivery_id, d.c.endpoint_id == endpoint_id)
                )
            ).first()
        return delivery_of(row) if row is not None else None

    async def sweep(self, before: datetime) -> int:
        """Events older than ``before``, with their finished deliveries. An event a delivery
        still waits to send is kept until it is sent or dead."""
        waiting = select(d.c.event_id).where(d.c.state == PENDING)
        async with self.engines.write() as conn:
            old = e.c.created_at < before
            gone = await conn.execute(
                e.delete().where(old, e.c.id.not_in(waiting)).returning(e.c.id)
            )
            ids: Sequence[str] = [row.id for row in gone]
            for start in range(0, len(ids), 400):
                await conn.execute(d.delete().where(d.c.event_id.in_(ids[start : start + 400])))
        return len(ids)
