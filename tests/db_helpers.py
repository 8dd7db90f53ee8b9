"""Helpers for tests that work on the database directly: the repositories on a fresh
schema, and new file rows. Apart from ``tests/helpers.py`` so that the HTTP-level helpers never
depend on the database layer's modules."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from uploads_api.db.engine import Engines, create_engines
from uploads_api.db.events import EventWriter
from uploads_api.db.files import FileRepository
from uploads_api.db.models import NewFile
from uploads_api.db.queue import TaskQueue
from uploads_api.db.schema import ensure_schema
from uploads_api.db.usage import UsageRepository
from uploads_api.file_json import render_file
from uploads_api.storage import original_key


@dataclass
class Repositories:
    """The three repositories over one database, as the runtime builds them."""

    engines: Engines
    files: FileRepository
    queue: TaskQueue
    usage: UsageRepository

    @classmethod
    def over(cls, engines: Engines, *, max_attempts: int = 3) -> Repositories:
        events = EventWriter(render_file)
        return cls(
            engines,
            FileRepository(engines, events, max_attempts=max_attempts),
            TaskQueue(engines, events, max_attempts=max_attempts),
            UsageRepository(engines),
        )

    async def status_of(self, file_id: str) -> str | None:
        """The file's status, or ``None`` once it is deleted."""
        record = await self.files.get_file(file_id)
        return None if record is None else record.status


@asynccontextmanager
async def open_repository(url: str, *, max_attempts: int = 3) -> AsyncIterator[Repositories]:
    """Engines belong to one event loop, so they are made and disposed inside the test's."""
    engines = create_engines(url)
    try:
        await ensure_schema(engines)
        yield Repositories.over(engines, max_attempts=max_attempts)
    finally:
        await engines.dispose()


def new_file(*, content: bytes | None = None, owner: str | None = None) -> NewFile:
    file_id = secrets.token_hex(16)
    data = content if content is not None else file_id.encode()
    return NewFile(
        id=file_id,
        filename=f"{file_id[:6]}.txt",
        content_type="text/plain",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_key=original_key(file_id),
        owner=owner,
    )
