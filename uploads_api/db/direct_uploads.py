"""Direct uploads in progress: what a client announced (name, size, hash), where its parts
go, and until when. A row lives from ``POST /v1/direct-uploads`` until the upload is
completed (the file's record takes over), aborted, or swept after its expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update

from uploads_api.db.engine import Engines
from uploads_api.db.tables import direct_uploads as d
from uploads_api.db.tables import utcnow

OPEN, COMPLETING = "open", "completing"


@dataclass(frozen=True)
class DirectUpload:
    id: str
    owner: str | None
    filename: str
    size: int
    sha256: str | None
    storage_key: str
    upload_id: str
    part_size: int
    state: str
    created_at: datetime
    expires_at: datetime

    @property
    def part_count(self) -> int:
        return -(-self.size // self.part_size)


class DirectUploadRepository:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def add(self, upload: DirectUpload) -> None:
        async with self.engines.write() as conn:
            await conn.execute(insert(d).values(**upload.__dict__))

    async def set_upload_id(self, upload_id: str, storage_upload_id: str) -> None:
        async with self.engines.write() as conn:
            await conn.execute(
                update(d).where(d.c.id == upload_id).values(upload_id=storage_upload_id)
            )

    async def get(self, upload_id: str, scope: str | None) -> DirectUpload | None:
        """The open upload, if ``scope`` (an owner; ``None`` for all) may see it and it has
        not expired."""
        query = select(d).where(d.c.id == upload_id, d.c.expires_at > utcnow())
        if scope is not None:
            query = query.where(d.c.owner == scope)
        async with self.engines.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else DirectUpload(**row._mapping)

    async def take(self, upload_id: str) -> bool:
        """Mark the upload as being completed; ``False`` if another request already is, or
        it is gone. Whoever gets ``True`` must ``release`` or ``remove`` it."""
        async with self.engines.write() as conn:
            taken = await conn.execute(
                update(d).where(d.c.id == upload_id, d.c.state == OPEN).values(state=COMPLETING)
            )
        return taken.rowcount == 1

    async def release(self, upload_id: str) -> None:
        """Open again: the parts were refused, and the client may send a corrected list."""
        async with self.engines.write() as conn:
            await conn.execute(update(d).where(d.c.id == upload_id).values(state=OPEN))

    async def remove(self, upload_id: str) -> None:
        async with self.engines.write() as conn:
            await conn.execute(delete(d).where(d.c.id == upload_id))

    async def expired(self, limit: int = 500) -> list[DirectUpload]:
        """Uploads past their expiry, which the sweep aborts."""
        query = select(d).where(d.c.expires_at <= utcnow()).order_by(d.c.expires_at).limit(limit)
        async with self.engines.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [DirectUpload(**row._mapping) for row in rows]

    async def open_keys(self) -> set[str]:
        """The storage keys of every upload still in progress (not to be swept)."""
        async with self.engines.reader.connect() as conn:
            rows = await conn.execute(select(d.c.storage_key))
        return {row.storage_key for row in rows}
