"""Reading the outbox for the live stream (``GET /v1/events``): what committed since a
position, for the one poller of a process, and one caller's events after a given one, for
a client that resumes with ``Last-Event-ID``. Nothing here writes."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select

from uploads_api.db import tables
from uploads_api.db.engine import Engines

e = tables.events


@dataclass(frozen=True)
class FeedEvent:
    seq: int
    id: str
    type: str
    owner: str | None
    payload: dict[str, Any]


_COLUMNS = (e.c.seq, e.c.id, e.c.type, e.c.owner, e.c.payload)


def _owned(scope: str | None) -> ColumnElement[bool] | None:
    return None if scope is None else e.c.owner == scope


class EventFeed:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def newest_seq(self) -> int:
        """The highest position committed, 0 for an empty table."""
        async with self.engines.reader.connect() as conn:
            newest = (await conn.execute(select(func.max(e.c.seq)))).scalar()
        return int(newest or 0)

    async def committed_since(
        self, after: int, missing: Collection[int], *, limit: int
    ) -> list[FeedEvent]:
        """Events past ``after``, and those of ``missing`` (positions passed over because
        they had not committed yet), every owner's and type, by position."""
        condition: ColumnElement[bool] = e.c.seq > after
        if missing:
            condition = or_(condition, e.c.seq.in_(sorted(missing)))
        query = select(*_COLUMNS).where(condition).order_by(e.c.seq).limit(limit)
        async with self.engines.reader.connect() as conn:
            return [FeedEvent(**row._mapping) for row in await conn.execute(query)]

    async def position_of(self, event_id: str, scope: str | None) -> int | None:
        """Where the event is, if it is still kept and ``scope`` (an owner; ``None`` for
        all) may see it: another owner's event is as unknown as a removed one."""
        query = select(e.c.seq).where(e.c.id == event_id)
        owned = _owned(scope)
        if owned is not None:
            query = query.where(owned)
        async with self.engines.reader.connect() as conn:
            seq = (await conn.execute(query)).scalar()
        return None if seq is None else int(seq)

    async def events_after(
        self, after: int, scope: str | None, types: Sequence[str], *, limit: int
    ) -> list[FeedEvent]:
        """One page of what ``scope`` may see past ``after``, of these types, by position."""
        query = select(*_COLUMNS).where(e.c.seq > after, e.c.type.in_(types))
        owned = _owned(scope)
        if owned is not None:
            query = query.where(owned)
        async with self.engines.reader.connect() as conn:
            rows = await conn.execute(query.order_by(e.c.seq).limit(limit))
            return [FeedEvent(**row._mapping) for row in rows]
