"""The upload service: what the routes ask for, with no web framework in sight.

Every call names its caller (a ``Principal``); a file another owner uploaded is reported
as missing, never as forbidden, so ids reveal nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from uploads_api.auth import Principal
from uploads_api.db.models import FILE_TASKS, PROCESSING, FileRecord, NewFile, Quota
from uploads_api.errors import NotFound, ServiceUnavailable
from uploads_api.ingest.multipart import MultipartIntake
from uploads_api.ingest.policy import UploadPolicy
from uploads_api.ingest.raw import receive_raw
from uploads_api.ingest.sink import ReceivedFile
from uploads_api.ingest.stream import with_timeout
from uploads_api.services import Services
from uploads_api.storage import thumbnail_prefix
from uploads_api.storage.keys import validate_file_id
from uploads_api.tasks.plan import basic_facts, settled_at_upload

# Waiting polls the record: quickly at first (most files are done in well under a second),
# then less often, so many waiting clients do not crowd the database.
WAIT_POLL_FIRST, WAIT_POLL_MAX = 0.05, 0.5
log = logging.getLogger(__name__)


class UploadService:
    def __init__(self, services: Services, principal: Principal) -> None:
        self.services = services
        self.settings = services.settings
        self.repository = services.repository
        self.principal = principal

    async def upload_multipart(
        self, content_type: str | None, stream: AsyncIterator[bytes]
    ) -> list[FileRecord]:
        with self.services.upload_slots.hold(self.principal.key_id):
            policy = await self._policy()
            intake = MultipartIntake(self.services.storage, self.services.limits, policy)
            result = await intake.receive(content_type, self._timed(stream))
            return await self._record(result.files, policy.quota)

    async def upload_raw(
        self,
        filename: str,
        stream: AsyncIterator[bytes],
        content_length: int | None,
        expected_sha256: str | None = None,
    ) -> FileRecord:
        with self.services.upload_slots.hold(self.principal.key_id):
            policy = await self._policy()
            received = await receive_raw(
                self.services.storage,
                policy,
                filename,
                self._timed(stream),
                content_length,
                expected_sha256,
            )
            (record,) = await self._record([received], policy.quota)
        return record

    def _timed(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return with_timeout(stream, self.settings.body_timeout)

    async def _policy(self) -> UploadPolicy:
        policy = UploadPolicy(
            max_file_size=self.settings.max_file_size,
            allowed_types=self.settings.allowed_types,
        )
        if self.settings.quota_bytes is not None or self.settings.quota_files is not None:
            owner = self.principal.owner
            policy.quota = Quota(owner, self.settings.quota_bytes, self.settings.quota_files)
            policy.used_bytes, policy.used_files = await self.repository.usage(owner)
        return policy

    async def _record(self, received: list[ReceivedFile], quota: Quota | None) -> list[FileRecord]:
        """Commit records and tasks in one transaction; on failure the stored bytes go too."""
        formats = self.settings.image_formats
        new_files = [
            NewFile(
                id=r.id,
                filename=r.filename,
                content_type=r.content_type,
                size=r.size,
                sha256=r.sha256,
                storage_key=r.storage_key,
                owner=self.principal.owner,
                verified=r.verified,
                metadata=basic_facts(r.content_type, r.size, r.sha256),
                settled=settled_at_upload(r.content_type, r.size, formats),
            )
            for r in received
        ]
        try:
            return await self.repository.create_files(new_files, FILE_TASKS, quota)
        except BaseException as exc:
            await asyncio.shield(self._remove_blobs(received))
            if isinstance(exc, OperationalError | PoolTimeout):
                raise ServiceUnavailable(
                    "the database is not available; nothing was stored"
                ) from exc
            raise

    async def _remove_blobs(self, received: list[ReceivedFile]) -> None:
        for item in received:
            try:
                await self.services.storage.delete(item.storage_key)
            except OSError:
                log.exception("could not remove %s; the sweep will", item.storage_key)

    async def get(self, file_id: str, wait: float = 0) -> FileRecord:
        """The record; with ``wait``, held until processing ends or ``wait`` seconds pass."""
        self._check_id(file_id)
        deadline = time.monotonic() + wait
        pause = WAIT_POLL_FIRST
        while True:
            record = await self.repository.get_file(file_id, self.principal.scope)
            if record is None:
                raise NotFound(f"no file with id {file_id}")
            if record.status != PROCESSING or time.monotonic() >= deadline:
                return record
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, WAIT_POLL_MAX)

    async def delete(self, file_id: str) -> None:
        record = await self.get(file_id)
        payload = {
            "deleted": True,
            "storage_key": record.storage_key,
            "thumbnail_prefix": thumbnail_prefix(file_id),
        }
        if not await self.repository.delete_file(file_id, payload):
            raise NotFound(f"no file with id {file_id}")

    async def retry(self, file_id: str) -> FileRecord:
        await self.get(file_id)
        await self.repository.retry_file(file_id)
        return await self.get(file_id)

    @staticmethod
    def _check_id(file_id: str) -> None:
        try:
            validate_file_id(file_id)
        except ValueError as exc:
            raise NotFound(f"no file with id {file_id}") from exc
