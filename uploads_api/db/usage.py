"""What an owner has stored, and the quota that caps it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from uploads_api.db import tables
from uploads_api.db.engine import Engines
from uploads_api.db.tus_uploads import reserved_bytes
from uploads_api.errors import QuotaExceeded

f = tables.files


@dataclass(frozen=True)
class Quota:
    """An owner's limits; ``check`` raises ``QuotaExceeded`` when a total would cross one."""

    owner: str | None
    max_bytes: int | None
    max_files: int | None

    def check(self, total_bytes: int, total_files: int) -> None:
        if self.max_bytes is not None and total_bytes > self.max_bytes:
            raise QuotaExceeded(
                f"this upload would take the owner past the quota of {self.max_bytes} bytes",
                quota="UPLOADS_QUOTA_BYTES",
                limit=self.max_bytes,
            )
        if self.max_files is not None and total_files > self.max_files:
            raise QuotaExceeded(
                f"this upload would take the owner past the quota of {self.max_files} files",
                quota="UPLOADS_QUOTA_FILES",
                limit=self.max_files,
            )


class UsageRepository:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def usage(self, owner: str | None) -> tuple[int, int]:
        """Bytes and files an owner has stored."""
        async with self.engines.reader.connect() as conn:
            return await conn.run_sync(usage_in, owner)


def usage_in(conn: Connection, owner: str | None) -> tuple[int, int]:
    """``UsageRepository.usage`` inside the caller's transaction: stored files, and the
    bytes that unfinished resumable uploads have reserved."""
    query = select(func.coalesce(func.sum(f.c.size), 0), func.count()).where(
        f.c.owner.is_(None) if owner is None else f.c.owner == owner
    )
    used_bytes, used_files = conn.execute(query).one()
    reserved = conn.execute(reserved_bytes(owner)).scalar_one()
    return int(used_bytes) + int(reserved), int(used_files)


def check_quota_in(conn: Connection, quota: Quota, adding_bytes: int, adding_files: int) -> None:
    """Raise ``QuotaExceeded`` if adding these would cross the quota, inside the caller's
    write transaction, so two uploads racing each other cannot both slip under it."""
    if conn.dialect.name == "postgresql":
        # READ COMMITTED lets two uploads read the same usage; serialise per owner.
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(quota.owner or ""))))
    used_bytes, used_files = usage_in(conn, quota.owner)
    quota.check(used_bytes + adding_bytes, used_files + adding_files)
