"""Image variants kept in storage: one row each, with its owner, size and last use, so that
the sweep can hold every owner's variants under a cap, least recently used first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, func, insert, select, update

from uploads_api.db.engine import Engines
from uploads_api.db.tables import files as f
from uploads_api.db.tables import utcnow
from uploads_api.db.tables import variants as v

# Keys per IN (...) list: under SQLite's old limit of 999 parameters.
_IN_CHUNK = 400


@dataclass(frozen=True)
class StoredVariant:
    key: str
    size: int


class VariantRepository:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def record(self, key: str, file_id: str, size: int) -> bool:
        """Note a variant just stored at ``key``, used now, owned by its file's owner.
        ``False`` when the file is gone (deleted while the variant was made): nothing is
        recorded, and the caller removes what it stored."""
        now = utcnow()
        async with self.engines.write() as conn:
            # FOR UPDATE: a delete of the file waits for this row, then removes it too.
            owner_row = (
                await conn.execute(select(f.c.owner).where(f.c.id == file_id).with_for_update())
            ).first()
            if owner_row is None:
                return False
            await conn.execute(delete(v).where(v.c.key == key))
            await conn.execute(
                insert(v).values(
                    key=key,
                    file_id=file_id,
                    owner=owner_row.owner,
                    size=size,
                    created_at=now,
                    used_at=now,
                )
            )
        return True

    async def touch(self, uses: Mapping[str, datetime]) -> None:
        """Set when each variant was last served, in one transaction."""
        if not uses:
            return
        rows = [{"k": key, "t": at} for key, at in uses.items()]
        statement = update(v).where(v.c.key == bindparam("k")).values(used_at=bindparam("t"))
        async with self.engines.write() as conn:
            await conn.execute(statement, rows)

    async def owners_over(self, cap: int) -> list[tuple[str | None, int]]:
        """Owners whose variants take more than ``cap`` bytes, with their total."""
        total = func.sum(v.c.size)
        query = select(v.c.owner, total.label("total")).group_by(v.c.owner).having(total > cap)
        async with self.engines.reader.connect() as conn:
            return [(row.owner, int(row.total)) for row in await conn.execute(query)]

    async def least_recent(self, owner: str | None, limit: int) -> list[StoredVariant]:
        """The owner's variants served longest ago, oldest first."""
        query = (
            select(v.c.key, v.c.size)
            .where(v.c.owner.is_not_distinct_from(owner))
            .order_by(v.c.used_at, v.c.key)
            .limit(limit)
        )
        async with self.engines.reader.connect() as conn:
            return [StoredVariant(row.key, row.size) for row in await conn.execute(query)]

    async def forget(self, keys: Sequence[str]) -> None:
        """Drop the rows of variants removed from storage."""
        async with self.engines.write() as conn:
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = list(keys[start : start + _IN_CHUNK])
                await conn.execute(delete(v).where(v.c.key.in_(chunk)))

    async def forget_orphans(self) -> int:
        """Drop rows whose file is gone (its variants went with its thumbnails)."""
        async with self.engines.write() as conn:
            gone = await conn.execute(
                delete(v).where(~select(f.c.id).where(f.c.id == v.c.file_id).exists())
            )
        return int(gone.rowcount or 0)
