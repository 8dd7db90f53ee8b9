"""Files: upload, get (and wait), list, check hashes, read bytes and thumbnails, delete,
retry.

A file another owner uploaded is reported as missing, never as forbidden, so ids reveal
nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from uploads_api.auth import Principal
from uploads_api.config import Settings
from uploads_api.db.files import FileRepository, InvalidCursor
from uploads_api.db.idempotency import Completion
from uploads_api.db.models import FILE_TASKS, PROCESSING, FileRecord, NewFile
from uploads_api.db.usage import Quota, UsageRepository
from uploads_api.errors import BadRequest, IdempotentFilesDeleted, NotFound
from uploads_api.ingest.discard import DISCARD
from uploads_api.ingest.group import remove_blobs
from uploads_api.ingest.limits import IngestLimits
from uploads_api.ingest.multipart import MultipartIntake
from uploads_api.ingest.policy import UploadPolicy
from uploads_api.ingest.raw import receive_raw
from uploads_api.ingest.slots import UploadSlots
from uploads_api.ingest.stream import with_timeout
from uploads_api.media.outputs import Thumbnail
from uploads_api.services.audit import Auditor
from uploads_api.services.idempotency import Hold, IdempotencyKeys
from uploads_api.storage import (
    BlobTarget,
    DirectTransfer,
    Storage,
    thumbnail_key,
    thumbnail_prefix,
)
from uploads_api.storage.keys import validate_file_id
from uploads_api.tasks.base import TaskDispatcher
from uploads_api.tasks.plan import basic_facts, settled_at_upload

# Waiting polls the record: quickly at first (most files are done in well under a second),
# then less often, so many waiting clients do not crowd the database.
WAIT_POLL_FIRST, WAIT_POLL_MAX = 0.05, 0.5


@dataclass(frozen=True)
class Uploaded:
    """What an upload request came to: the files it stored, with ``body``, the answer
    recorded under its Idempotency-Key (``None`` without one); or, ``replayed``, no file
    and an earlier request's answer."""

    records: list[FileRecord]
    body: Any = None
    replayed: bool = False


@dataclass(frozen=True)
class Blob:
    """Bytes to send: a stream of ``length`` bytes."""

    body: AsyncIterator[bytes]
    length: int


class FileService:
    def __init__(
        self,
        settings: Settings,
        files: FileRepository,
        usage: UsageRepository,
        storage: Storage,
        limits: IngestLimits,
        upload_slots: UploadSlots,
        dispatcher: TaskDispatcher,
        auditor: Auditor,
        keys: IdempotencyKeys,
        render: Callable[[FileRecord], dict[str, Any]],
    ) -> None:
        self.settings = settings
        self.files = files
        self.usage = usage
        self.storage = storage
        self.limits = limits
        self.upload_slots = upload_slots
        self.dispatcher = dispatcher
        self.auditor = auditor
        self.keys = keys
        self._render = render

    # Uploads -------------------------------------------------------------------------------

    async def upload_multipart(
        self,
        caller: Principal,
        content_type: str | None,
        stream: AsyncIterator[bytes],
        idempotency_key: str | None = None,
    ) -> Uploaded:
        with self.upload_slots.hold(caller.key_id):
            async with self.keys.hold(caller.owner, idempotency_key, "POST /v1/files") as hold:
                target, policy = await self._intake_for(caller, hold)
                intake = MultipartIntake(target, self.limits, policy)
                received = await intake.receive(content_type, self._timed(stream))
                if hold.earlier is not None:
                    return await self._replayed(hold, received)
                completion = hold.completion(received, self._render_files)
                records = await self.record(caller, received, policy.quota, completion=completion)
        return _uploaded(records, completion)

    async def upload_raw(
        self,
        caller: Principal,
        filename: str,
        stream: AsyncIterator[bytes],
        content_length: int | None,
        expected_sha256: str | None = None,
        idempotency_key: str | None = None,
    ) -> Uploaded:
        operation = f"PUT /v1/files/{filename}"
        with self.upload_slots.hold(caller.key_id):
            async with self.keys.hold(caller.owner, idempotency_key, operation) as hold:
                target, policy = await self._intake_for(caller, hold)
                received = await receive_raw(
                    target, policy, filename, self._timed(stream), content_length, expected_sha256
                )
                if hold.earlier is not None:
                    return await self._replayed(hold, [received])
                completion = hold.completion([received], lambda one: self._render(one[0]))
                records = await self.record(caller, [received], policy.quota, completion=completion)
        return _uploaded(records, completion)

    async def _replayed(self, hold: Hold, received: list[NewFile]) -> Uploaded:
        """The first answer, while every file it names is still stored: an answer is never
        a 201 for files that are gone."""
        answer = hold.replay(received)
        body = answer.body
        ids = [item["id"] for item in body["files"]] if "files" in body else [body["id"]]
        if len(await self.files.existing_file_ids(ids)) < len(set(ids)):
            raise IdempotentFilesDeleted(
                "the first request with this Idempotency-Key stored its files, but some have"
                " been deleted since; upload what is missing with a new key"
            )
        return Uploaded([], body, replayed=True)

    def _render_files(self, records: Sequence[FileRecord]) -> dict[str, Any]:
        return {"files": [self._render(record) for record in records]}

    async def _intake_for(self, caller: Principal, hold: Hold) -> tuple[BlobTarget, UploadPolicy]:
        """Where the body's files go, and within which limits. A request that repeats an
        earlier one is read only to compare it: its bytes go nowhere, and it has no quota
        (its files are counted already), every type and nothing stripped (its checksums
        are of what it sent)."""
        if hold.earlier is not None:
            return DISCARD, UploadPolicy(max_file_size=self.settings.max_file_size)
        return self.storage, await self.policy(caller)

    def _timed(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return with_timeout(stream, self.settings.body_timeout)

    async def policy(self, caller: Principal) -> UploadPolicy:
        """What the caller may store: sizes, types, what is left of the quota."""
        settings = self.settings
        policy = UploadPolicy(
            max_file_size=settings.max_file_size,
            allowed_types=settings.allowed_types,
            strip_metadata=settings.strip_metadata,
        )
        if settings.quota_bytes is not None or settings.quota_files is not None:
            policy.quota = Quota(caller.owner, settings.quota_bytes, settings.quota_files)
            policy.used_bytes, policy.used_files = await self.usage.usage(caller.owner)
        return policy

    async def record(
        self,
        caller: Principal,
        received: list[NewFile],
        quota: Quota | None,
        task_names: Sequence[str] = FILE_TASKS,
        audit_detail: dict[str, Any] | None = None,
        completion: Completion | None = None,
    ) -> list[FileRecord]:
        """Commit records and tasks in one transaction, with the request's answer under its
        idempotency key when there is one; on failure the stored bytes go too."""
        decoders = self.settings.decoders
        new_files = [
            dataclasses.replace(
                item,
                owner=caller.owner,
                # With what the intake found (what stripping removed, say).
                metadata={
                    **basic_facts(item.content_type, item.size, item.sha256 or None),
                    **(item.metadata or {}),
                },
                settled=settled_at_upload(item.content_type, item.size, decoders),
            )
            for item in received
        ]
        try:
            records = await self.files.create_files(new_files, task_names, quota, completion)
        except BaseException:
            await asyncio.shield(remove_blobs(self.storage, received))
            raise
        for record in records:
            self.auditor.record(
                "file.uploaded",
                caller,
                file_id=record.id,
                detail={
                    "size": record.size,
                    "content_type": record.content_type,
                    **(audit_detail or {}),
                },
            )
        return records

    async def start_processing(self, file_ids: Sequence[str]) -> None:
        """Hand committed work to the task backend (called after the response is sent)."""
        if file_ids:
            await self.dispatcher.dispatch(file_ids)

    # Reads ---------------------------------------------------------------------------------

    async def get(self, caller: Principal, file_id: str, wait: float = 0) -> FileRecord:
        """The record; with ``wait``, held until processing ends or ``wait`` seconds pass."""
        return await settled_record(self.files, file_id, caller.scope, wait)

    async def list_files(
        self,
        caller: Principal,
        *,
        limit: int,
        cursor: str | None = None,
        status: str | None = None,
        sha256: str | None = None,
    ) -> tuple[list[FileRecord], str | None]:
        """A page of the caller's files, newest first, and the cursor of the next page."""
        try:
            return await self.files.list_files(
                limit=limit, cursor=cursor, status=status, sha256=sha256, scope=caller.scope
            )
        except InvalidCursor as exc:
            raise BadRequest("the cursor is not valid") from exc

    async def check(self, caller: Principal, hashes: Sequence[str]) -> tuple[list[str], list[str]]:
        """Which of these sha256 hashes the caller has a file for: (present, missing)."""
        wanted = list(dict.fromkeys(h.lower() for h in hashes))
        present = await self.files.present_hashes(wanted, caller.scope)
        return [h for h in wanted if h in present], [h for h in wanted if h not in present]

    def content(
        self, caller: Principal, record: FileRecord, start: int, end: int
    ) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) of a record the caller got."""
        whole = start == 0 and end == record.size
        self.auditor.record(
            "file.downloaded",
            caller,
            file_id=record.id,
            detail={
                "bytes": end - start,
                **({} if whole else {"range": [start, end - 1]}),
                **_others(caller, record),
            },
        )
        return self.storage.read(record.storage_key, start, end)

    @property
    def presigns_downloads(self) -> bool:
        """Whether downloads are answered with a presigned storage URL (a 302)."""
        return self.settings.s3_presigned_downloads and isinstance(self.storage, DirectTransfer)

    async def presigned_content(
        self,
        caller: Principal,
        record: FileRecord,
        *,
        disposition: str,
        content_type: str,
        max_age: int | None = None,
    ) -> str | None:
        """A presigned URL for the record's bytes, living UPLOADS_S3_PRESIGNED_EXPIRY seconds
        (at most ``max_age``, what is left of a signed link); ``None`` when downloads go
        through the API."""
        if not self.presigns_downloads:
            return None
        assert isinstance(self.storage, DirectTransfer)
        expires_in = self.settings.s3_presigned_expiry
        if max_age is not None:
            expires_in = max(1, min(expires_in, max_age))
        url = await self.storage.download_url(
            record.storage_key,
            disposition=disposition,
            content_type=content_type,
            expires_in=expires_in,
        )
        self.auditor.record(
            "file.downloaded",
            caller,
            file_id=record.id,
            detail={"bytes": record.size, "presigned": True, **_others(caller, record)},
        )
        return url

    async def thumbnail(self, caller: Principal, file_id: str, size: int) -> tuple[Thumbnail, Blob]:
        record = await self.get(caller, file_id)
        match = next((thumb for thumb in record.thumbnails if thumb.size == size), None)
        if match is None:
            raise NotFound(f"no {size}px thumbnail for file {file_id} (yet)")
        key = thumbnail_key(file_id, size, match.extension)
        length = await self.storage.size(key)
        if length is None:
            raise NotFound(f"no {size}px thumbnail for file {file_id} (yet)")
        return match, Blob(self.storage.read(key), length)

    # Changes -------------------------------------------------------------------------------

    async def delete(self, caller: Principal, file_id: str) -> None:
        """Drop the record now; its bytes go with the cleanup task it queues."""
        record = await self.get(caller, file_id)
        payload = {
            "deleted": True,
            "storage_key": record.storage_key,
            "thumbnail_prefix": thumbnail_prefix(file_id),
        }
        if not await self.files.delete_file(file_id, payload):
            raise NotFound(f"no file with id {file_id}")
        self.auditor.record("file.deleted", caller, file_id=file_id, detail=_others(caller, record))

    async def retry(self, caller: Principal, file_id: str) -> FileRecord:
        """Queue the file's failed tasks again."""
        record = await self.get(caller, file_id)
        requeued = await self.files.retry_file(file_id)
        self.auditor.record(
            "file.retried",
            caller,
            file_id=file_id,
            detail={"requeued": requeued, **_others(caller, record)},
        )
        return await self.get(caller, file_id)


async def settled_record(
    files: FileRepository, file_id: str, scope: str | None, wait: float = 0
) -> FileRecord:
    """The record, if ``scope`` (an owner; ``None``: any) may see it, else ``NotFound``;
    with ``wait``, held until processing ends or ``wait`` seconds pass."""
    _check_id(file_id)
    deadline = time.monotonic() + wait
    pause = WAIT_POLL_FIRST
    while True:
        record = await files.get_file(file_id, scope)
        if record is None:
            raise NotFound(f"no file with id {file_id}")
        if record.status != PROCESSING or time.monotonic() >= deadline:
            return record
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, WAIT_POLL_MAX)


def _uploaded(records: list[FileRecord], completion: Completion | None) -> Uploaded:
    return Uploaded(records, None if completion is None else completion.body)


def waiting_ids(records: Sequence[FileRecord]) -> list[str]:
    """The files that still have queued work."""
    return [record.id for record in records if record.status == PROCESSING]


def _others(caller: Principal, record: FileRecord) -> dict[str, str | None]:
    """For the audit log: whose file an admin acted on, when it was not the admin's own."""
    return {} if record.owner == caller.owner else {"file_owner": record.owner}


def _check_id(file_id: str) -> None:
    try:
        validate_file_id(file_id)
    except ValueError as exc:
        raise NotFound(f"no file with id {file_id}") from exc
