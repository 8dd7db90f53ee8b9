"""Webhook endpoints: created, listed, changed, removed; the one set by the environment."""

from __future__ import annotations

import base64
import dataclasses
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row

from uploads_api.db.engine import Engines
from uploads_api.db.events import EVENT_TYPES
from uploads_api.db.tables import utcnow, webhook_deliveries, webhook_endpoints

w = webhook_endpoints
# The endpoint UPLOADS_WEBHOOK_URL describes: every owner's events.
ENV_ENDPOINT_ID = "whe_environment"
_UNSET = "UPLOADS_WEBHOOK_URL is unset"
ENDPOINT_ID_PATTERN = "^whe_[0-9a-z_]{1,36}$"


@dataclass(frozen=True)
class Endpoint:
    id: str
    owner: str | None
    url: str
    secret: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


def endpoint_of(row: Row[Any]) -> Endpoint:
    return Endpoint(**row._mapping)


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def valid_endpoint_id(value: str) -> bool:
    return re.fullmatch(ENDPOINT_ID_PATTERN, value) is not None


class EndpointRepository:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def create(
        self, owner: str | None, url: str, events: Sequence[str], description: str
    ) -> Endpoint:
        endpoint = Endpoint(
            id="whe_" + secrets.token_hex(12),
            owner=owner,
            url=url,
            secret=new_secret(),
            events=list(events),
            description=description,
            enabled=True,
            disabled_reason=None,
            created_at=utcnow(),
        )
        async with self.engines.write() as conn:
            await conn.execute(insert(w), [dataclasses.asdict(endpoint)])
        return endpoint

    async def get(self, endpoint_id: str, scope: str | None) -> Endpoint | None:
        """The endpoint, if ``scope`` (an owner; ``None`` for all) may see it."""
        query = select(w).where(w.c.id == endpoint_id)
        if scope is not None:
            query = query.where(w.c.owner == scope)
        async with self.engines.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return endpoint_of(row) if row is not None else None

    async def list_endpoints(
        self, scope: str | None, limit: int, after: str | None
    ) -> list[Endpoint]:
        query = select(w).order_by(w.c.id).limit(limit)
        if scope is not None:
            query = query.where(w.c.owner == scope)
        if after is not None:
            query = query.where(w.c.id > after)
        async with self.engines.reader.connect() as conn:
            return [endpoint_of(row) for row in await conn.execute(query)]

    async def update(self, endpoint_id: str, changes: dict[str, Any]) -> Endpoint | None:
        if changes.get("enabled") is True:
            changes = {**changes, "disabled_reason": None}
        async with self.engines.write() as conn:
            if changes:
                await conn.execute(update(w).where(w.c.id == endpoint_id).values(**changes))
            row = (await conn.execute(select(w).where(w.c.id == endpoint_id))).first()
        return endpoint_of(row) if row is not None else None

    async def disable(self, endpoint_id: str, reason: str) -> None:
        async with self.engines.write() as conn:
            await conn.execute(
                update(w).where(w.c.id == endpoint_id).values(enabled=False, disabled_reason=reason)
            )

    async def delete(self, endpoint_id: str) -> bool:
        """The endpoint and its deliveries, in one transaction."""
        async with self.engines.write() as conn:
            gone = await conn.execute(delete(w).where(w.c.id == endpoint_id))
            d = webhook_deliveries
            await conn.execute(delete(d).where(d.c.endpoint_id == endpoint_id))
        return gone.rowcount > 0

    async def configure_environment(self, url: str | None, secret: str | None) -> None:
        """Make the environment's endpoint match UPLOADS_WEBHOOK_URL and _SECRET: created or
        changed when set, disabled (its history kept) when unset."""
        async with self.engines.write() as conn:
            row = (await conn.execute(select(w).where(w.c.id == ENV_ENDPOINT_ID))).first()
            if url is None or secret is None:
                if row is not None and row.enabled:
                    await conn.execute(
                        update(w)
                        .where(w.c.id == ENV_ENDPOINT_ID)
                        .values(enabled=False, disabled_reason=_UNSET)
                    )
                return
            wanted = {"url": url, "secret": secret, "events": list(EVENT_TYPES)}
            if row is None:
                await conn.execute(
                    insert(w),
                    [
                        {
                            **wanted,
                            "id": ENV_ENDPOINT_ID,
                            "owner": None,
                            "description": "UPLOADS_WEBHOOK_URL",
                            "enabled": True,
                            "disabled_reason": None,
                            "created_at": utcnow(),
                        }
                    ],
                )
                return
            changed = any(row._mapping[key] != value for key, value in wanted.items())
            # A receiver's 410 keeps it disabled until the address changes.
            if changed or row.disabled_reason == _UNSET:
                await conn.execute(
                    update(w)
                    .where(w.c.id == ENV_ENDPOINT_ID)
                    .values(**wanted, enabled=True, disabled_reason=None)
                )
