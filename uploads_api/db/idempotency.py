"""Idempotency keys of uploads: claimed by the request that uses a key first, holding its
answer once that request has recorded its files, until they expire.

A key is per owner. Its row is ``running`` while a request holds it (``holder`` names the
process, ``locked_until`` ends a hold nobody renews) and ``done`` once the answer is in,
written by ``record_answer`` in the transaction that records the files: a 201 and its
stored answer commit together, or neither does.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from uploads_api.db.engine import Engines
from uploads_api.db.models import FileRecord
from uploads_api.db.tables import idempotency_keys as k
from uploads_api.db.tables import utcnow
from uploads_api.errors import IdempotencyKeyInProgress

RUNNING, DONE = "running", "done"


@dataclass(frozen=True)
class StoredKey:
    """A key as another request left it: ``running``, or ``done`` with its answer."""

    state: str
    holder: str
    fingerprint: str | None
    status: int | None
    body: Any
    expires_at: datetime
    locked_until: datetime | None


@dataclass
class Completion:
    """What a request holding a key records with its files: how the request looked
    (``fingerprint``) and its answer, ``render``-ed from the records in the transaction.
    ``body`` is that answer once recorded."""

    owner: str
    key: str
    holder: str
    fingerprint: str
    status: int
    render: Callable[[Sequence[FileRecord]], Any]
    body: Any = field(default=None, init=False)


class IdempotencyRepository:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def claim(
        self,
        owner: str,
        key: str,
        holder: str,
        *,
        ttl: float,
        lease: float,
        replace: str | None = None,
    ) -> StoredKey | None:
        """Claim the key for ``holder``: ``None`` once it is held. A key held by another
        request, or done and not expired, is returned as it is instead, unless it is
        ``running`` under ``replace`` (a holder known to be gone), or its hold lapsed."""
        try:
            return await self._claim(owner, key, holder, ttl, lease, replace)
        except IntegrityError:
            # PostgreSQL: another request inserted the same new key meanwhile.
            return await self._claim(owner, key, holder, ttl, lease, replace)

    async def _claim(
        self, owner: str, key: str, holder: str, ttl: float, lease: float, replace: str | None
    ) -> StoredKey | None:
        now = utcnow()
        values = {
            "state": RUNNING,
            "holder": holder,
            "fingerprint": None,
            "status": None,
            "response": None,
            "created_at": now,
            "expires_at": now + timedelta(seconds=ttl),
            "locked_until": now + timedelta(seconds=lease),
        }

        def claim_in(conn: Connection) -> StoredKey | None:
            row = conn.execute(
                select(k).where(k.c.owner == owner, k.c.key == key).with_for_update()
            ).first()
            if row is None:
                conn.execute(insert(k).values(owner=owner, key=key, **values))
                return None
            stored = _stored(row)
            if not _free(stored, now, replace):
                return stored
            conn.execute(update(k).where(k.c.owner == owner, k.c.key == key).values(values))
            return None

        # Every batch of a scripted upload claims a key: in one trip, it holds the writer
        # for less.
        return await self.engines.write_in_one_trip(claim_in)

    async def renew(self, owner: str, key: str, holder: str, lease: float) -> bool:
        """Extend a hold; ``False`` if ``holder`` no longer holds the key."""
        async with self.engines.write() as conn:
            done = await conn.execute(
                _held(owner, key, holder).values(locked_until=utcnow() + timedelta(seconds=lease))
            )
        return done.rowcount == 1

    async def release(self, owner: str, key: str, holder: str) -> None:
        """Let go of a key whose request failed: the next request with it starts afresh.
        A key whose answer is recorded stays."""
        async with self.engines.write() as conn:
            await conn.execute(
                delete(k).where(
                    k.c.owner == owner, k.c.key == key, k.c.holder == holder, k.c.state == RUNNING
                )
            )

    async def remove_expired(self) -> int:
        """The sweep: keys past their expiry, but for one a live request still holds."""
        now = utcnow()
        async with self.engines.write() as conn:
            done = await conn.execute(
                delete(k).where(
                    k.c.expires_at <= now,
                    or_(k.c.state == DONE, k.c.locked_until.is_(None), k.c.locked_until <= now),
                )
            )
        return done.rowcount


def record_answer(conn: Connection, completion: Completion, records: Sequence[FileRecord]) -> None:
    """Write the answer in the caller's transaction (the one recording ``records``).
    Raises ``IdempotencyKeyInProgress`` if the hold was lost (it lapsed and another request
    took the key): the transaction must not commit then."""
    completion.body = completion.render(records)
    packed = zlib.compress(json.dumps(completion.body, separators=(",", ":")).encode(), 1)
    done = conn.execute(
        _held(completion.owner, completion.key, completion.holder).values(
            state=DONE,
            fingerprint=completion.fingerprint,
            status=completion.status,
            response=packed,
            locked_until=None,
        )
    )
    if done.rowcount != 1:
        raise IdempotencyKeyInProgress(
            "another request took this Idempotency-Key over while this one ran; nothing was"
            " stored, send the request again"
        )


def _held(owner: str, key: str, holder: str) -> Any:
    return update(k).where(
        and_(k.c.owner == owner, k.c.key == key, k.c.holder == holder, k.c.state == RUNNING)
    )


def _free(stored: StoredKey, now: datetime, replace: str | None) -> bool:
    """Whether a new request may claim a key in this state."""
    if stored.state == DONE:
        return stored.expires_at <= now
    lapsed = stored.locked_until is None or stored.locked_until <= now
    return lapsed or stored.holder == replace


def _stored(row: Any) -> StoredKey:
    body = None if row.response is None else json.loads(zlib.decompress(row.response))
    return StoredKey(
        state=row.state,
        holder=row.holder,
        fingerprint=row.fingerprint,
        status=row.status,
        body=body,
        expires_at=row.expires_at,
        locked_until=row.locked_until,
    )
