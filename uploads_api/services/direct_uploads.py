"""Direct uploads: the client sends a file's parts straight to S3 through presigned URLs,
and the API only signs, checks and records.

``start`` checks what it can before any byte moves (size, quota), opens a multipart upload
at the file's final key and signs one URL per part. ``complete`` has storage assemble the
parts, checks the size and the sniffed type, and records the file with a ``verify`` task
ahead of the usual pipeline: the API never saw the bytes, so their hash is read back from
storage (and compared with the client's, when it gave one). An upload never completed is
aborted by the sweep once it expires (``tasks/cleanup.py``).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from uploads_api import metrics
from uploads_api.auth import Principal
from uploads_api.config import MiB, Settings
from uploads_api.db.direct_uploads import OPEN, DirectUpload, DirectUploadRepository
from uploads_api.db.models import DIRECT_FILE_TASKS, VERIFY, FileRecord, NewFile
from uploads_api.db.tables import utcnow
from uploads_api.errors import (
    DirectUploadBusy,
    DirectUploadsUnavailable,
    InvalidParts,
    NotFound,
    SizeMismatch,
)
from uploads_api.ingest.names import clean_filename
from uploads_api.services.files import FileService
from uploads_api.sniff import HEAD_SIZE, sniff_content_type
from uploads_api.storage import DirectTransfer, PartsRejected, Storage, original_key

# S3 takes at most this many parts per upload: bigger files get bigger parts.
MAX_PARTS = 10_000


@dataclass(frozen=True)
class Offer:
    """A started direct upload, and the URL each part goes to (part ``i + 1`` at ``urls[i]``)."""

    upload: DirectUpload
    urls: list[str]

    @property
    def expires_at(self) -> datetime:
        return self.upload.expires_at


def part_size_for(size: int, configured: int) -> int:
    """The configured part size, or the smallest whole number of MiB that keeps a file of
    ``size`` bytes within ``MAX_PARTS`` parts."""
    needed = -(-size // MAX_PARTS)
    return max(configured, -(-needed // MiB) * MiB)


class DirectUploadService:
    def __init__(
        self,
        settings: Settings,
        uploads: DirectUploadRepository,
        storage: Storage,
        file_service: FileService,
    ) -> None:
        self.settings = settings
        self.uploads = uploads
        self.storage = storage
        self.file_service = file_service

    @property
    def available(self) -> bool:
        return self.settings.direct_uploads and isinstance(self.storage, DirectTransfer)

    def _transfer(self) -> DirectTransfer:
        if not self.settings.direct_uploads or not isinstance(self.storage, DirectTransfer):
            raise DirectUploadsUnavailable(
                "this server does not offer direct uploads (its storage is not S3, or they"
                " are turned off); upload through the API instead"
            )
        return self.storage

    async def start(self, caller: Principal, filename: str, size: int, sha256: str | None) -> Offer:
        transfer = self._transfer()
        name = clean_filename(filename)
        # The limits that are known before a byte moves; the quota is checked again, in the
        # transaction that records the file.
        policy = await self.file_service.policy(caller)
        policy.take_file()
        policy.take_bytes(size, size, name)
        expiry = self.settings.direct_upload_expiry
        file_id = uuid.uuid4().hex
        key = original_key(file_id)
        now = utcnow()
        upload = DirectUpload(
            id=file_id,
            owner=caller.owner,
            filename=name,
            size=size,
            sha256=sha256.lower() if sha256 else None,
            storage_key=key,
            upload_id="",
            part_size=part_size_for(size, self.settings.direct_upload_part_size),
            state=OPEN,
            created_at=now,
            expires_at=now + timedelta(seconds=expiry),
        )
        # The row first: the sweep spares the multipart uploads that rows name.
        await self.uploads.add(upload)
        try:
            upload = replace(upload, upload_id=await transfer.start_upload(key))
            await self.uploads.set_upload_id(upload.id, upload.upload_id)
        except BaseException:
            await asyncio.shield(self._drop(upload))
            raise
        urls = await transfer.part_urls(key, upload.upload_id, upload.part_count, expiry)
        return Offer(upload, list(urls))

    async def _drop(self, upload: DirectUpload) -> None:
        if upload.upload_id:
            await self._transfer().abort_upload(upload.storage_key, upload.upload_id)
        await self.uploads.remove(upload.id)

    async def complete(
        self, caller: Principal, upload_id: str, parts: list[tuple[int, str]]
    ) -> FileRecord:
        transfer = self._transfer()
        upload = await self._get(caller, upload_id)
        expected = list(range(1, upload.part_count + 1))
        if [number for number, _etag in parts] != expected:
            raise InvalidParts(
                f"name every part from 1 to {upload.part_count}, in order, each once",
                parts=upload.part_count,
            )
        if not await self.uploads.take(upload.id):
            raise DirectUploadBusy(f"direct upload {upload.id} is being completed")
        try:
            await transfer.finish_upload(upload.storage_key, upload.upload_id, parts)
        except PartsRejected as exc:
            if await self.storage.size(upload.storage_key) != upload.size:
                await asyncio.shield(self.uploads.release(upload.id))
                raise InvalidParts(
                    f"storage refused the parts: {exc}", parts=upload.part_count
                ) from exc
            # "No such upload" after all, with the object there: an earlier attempt of this
            # call (a retry after a lost answer) assembled it.
        except BaseException:
            await asyncio.shield(self.uploads.release(upload.id))
            raise
        # The parts are one object now: from here the upload is spent, whatever happens.
        try:
            return await self._record(caller, upload)
        finally:
            await asyncio.shield(self.uploads.remove(upload.id))

    async def abort(self, caller: Principal, upload_id: str) -> None:
        transfer = self._transfer()
        upload = await self._get(caller, upload_id)
        if not await self.uploads.take(upload.id):
            raise DirectUploadBusy(f"direct upload {upload.id} is being completed")
        await transfer.abort_upload(upload.storage_key, upload.upload_id)
        await self.uploads.remove(upload.id)

    async def _get(self, caller: Principal, upload_id: str) -> DirectUpload:
        upload = await self.uploads.get(upload_id, caller.scope)
        if upload is None:
            raise NotFound(f"no open direct upload with id {upload_id}")
        return upload

    async def _record(self, caller: Principal, upload: DirectUpload) -> FileRecord:
        """Check the assembled object and record it as a file; refused, the object goes."""
        key = upload.storage_key
        try:
            size = await self.storage.size(key)
            if size != upload.size:
                raise SizeMismatch(
                    f"the parts add up to {size} bytes, not the {upload.size} announced",
                    size=size,
                    expected=upload.size,
                )
            head = b"".join([chunk async for chunk in self.storage.read(key, 0, HEAD_SIZE)])
            content_type = sniff_content_type(head)
            policy = await self.file_service.policy(caller)
            policy.check_type(content_type, upload.filename)
        except BaseException:
            await asyncio.shield(self.storage.delete(key))
            raise
        new_file = NewFile(
            id=upload.id,
            filename=upload.filename,
            content_type=content_type,
            size=upload.size,
            sha256="",  # until the verify task has read the bytes back
            storage_key=key,
            task_payloads={VERIFY: {"sha256": upload.sha256}},
        )
        # On failure, ``record`` removes the stored bytes.
        (record,) = await self.file_service.record(
            caller, [new_file], policy.quota, DIRECT_FILE_TASKS, audit_detail={"direct": True}
        )
        metrics.DIRECT_UPLOADS.inc()
        metrics.DIRECT_UPLOAD_BYTES.inc(record.size)
        return record
