"""API keys: created, listed, revoked, and looked up by hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update

from uploads_api.db.engine import Engines
from uploads_api.db.tables import api_keys as k
from uploads_api.db.tables import utcnow


@dataclass(frozen=True)
class ApiKey:
    id: int
    owner: str
    key_hash: str
    prefix: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


class KeyRepository:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def add(self, owner: str, key_hash: str, prefix: str, admin: bool) -> ApiKey:
        row = {
            "owner": owner,
            "key_hash": key_hash,
            "prefix": prefix,
            "admin": admin,
            "created_at": utcnow(),
            "revoked_at": None,
        }
        async with self.engines.write() as conn:
            result = await conn.execute(insert(k).values(row).returning(*k.c))
            return ApiKey(**result.one()._mapping)

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        async with self.engines.reader.connect() as conn:
            row = (await conn.execute(select(k).where(k.c.key_hash == key_hash))).first()
        return ApiKey(**row._mapping) if row else None

    async def by_id(self, key_id: int) -> ApiKey | None:
        async with self.engines.reader.connect() as conn:
            row = (await conn.execute(select(k).where(k.c.id == key_id))).first()
        return ApiKey(**row._mapping) if row else None

    async def all(self) -> list[ApiKey]:
        async with self.engines.reader.connect() as conn:
            return [ApiKey(**r._mapping) for r in await conn.execute(select(k).order_by(k.c.id))]

    async def active_count(self) -> int:
        async with self.engines.reader.connect() as conn:
            query = select(func.count()).select_from(k).where(k.c.revoked_at.is_(None))
            return int((await conn.execute(query)).scalar_one())

    async def ever_created(self) -> bool:
        """Whether any key was ever made: revoking every key must not reopen the server."""
        async with self.engines.reader.connect() as conn:
            return (await conn.execute(select(k.c.id).limit(1))).first() is not None

    async def revoke(self, prefix_or_id: str) -> list[ApiKey]:
        """Revoke by numeric id or key prefix; the keys revoked."""
        match = (
            k.c.id == int(prefix_or_id) if prefix_or_id.isdigit() else k.c.prefix == prefix_or_id
        )
        async with self.engines.write() as conn:
            done = await conn.execute(
                update(k)
                .where(match, k.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
                .returning(*k.c)
            )
            return [ApiKey(**row._mapping) for row in done]
