"""Resumable uploads (tus 1.0): create, append at the offset, read where one stands,
terminate, list; the last byte turns the upload into an ordinary file, recorded with its
tasks before the answer, as any upload is.

A PATCH writes under a lease on the upload's row (one writer across processes) and
answers only once its bytes are fsynced and the new offset committed. The bytes move into
storage under a second name, so that a failure to record the file leaves the upload whole
and the completing PATCH can be sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta

from uploads_api.auth import Principal
from uploads_api.config import Settings
from uploads_api.db.models import FileRecord, NewFile
from uploads_api.db.tables import utcnow
from uploads_api.db.tus_uploads import (
    DONE,
    FINAL,
    OPEN,
    PARTIAL,
    TusUpload,
    TusUploadRepository,
)
from uploads_api.errors import (
    ChecksumAlgorithmUnsupported,
    Forbidden,
    InvalidTusRequest,
    NotFound,
    OffsetMismatch,
    PayloadTooLarge,
    TooManyUploads,
    TusChecksumMismatch,
    UploadExpired,
    UploadLocked,
)
from uploads_api.ingest.names import clean_filename
from uploads_api.ingest.sink import new_file_id
from uploads_api.services.files import FileService
from uploads_api.services.tus_hashes import RunningHashes
from uploads_api.services.tus_metadata import parse_metadata
from uploads_api.services.tus_writer import CHECKSUMS, Checksum, ChunkWriter
from uploads_api.sniff import sniff_content_type
from uploads_api.storage import Storage, original_key
from uploads_api.storage.partials import PartialStore


@dataclass(frozen=True)
class Appended:
    """Where an upload stands after a PATCH, and the file it became if it is complete."""

    upload: TusUpload
    file: FileRecord | None = None


class TusService:
    def __init__(
        self,
        settings: Settings,
        uploads: TusUploadRepository,
        partials: PartialStore,
        storage: Storage,
        file_service: FileService,
    ) -> None:
        self.settings = settings
        self.uploads = uploads
        self.partials = partials
        self.storage = storage
        self.file_service = file_service
        self.hashes = RunningHashes()
        self.writer = ChunkWriter(settings, uploads, partials, self.hashes)

    # Creation ------------------------------------------------------------------------------

    async def create(
        self,
        caller: Principal,
        length: int | None,
        metadata_header: str | None,
        concat: str | None = None,
    ) -> TusUpload:
        """A new upload of ``length`` bytes (``None``: told later); its quota reserved,
        but for a final upload, whose partial uploads reserved it already."""
        metadata = parse_metadata(metadata_header)
        limit = self.settings.max_file_size
        if length is not None and length > limit:
            raise PayloadTooLarge(
                f"the upload is larger than the limit of {limit} bytes", limit=limit
            )
        # A final upload is finished when made, and the parts it joins are open until then:
        # counting it would refuse the join of a key at its cap.
        at_cap = await self.uploads.open_count(caller.key_id) >= self.settings.tus_max_open
        if at_cap and not is_final(concat):
            raise TooManyUploads(
                f"at most {self.settings.tus_max_open} unfinished resumable uploads per API key",
                retry_after=60,
            )
        if not is_final(concat):
            policy = await self.file_service.policy(caller)
            name = clean_filename(metadata.get("filename"))
            policy.take_file()
            policy.take_bytes(length or 0, length or 0, name)
        now = utcnow()
        upload = TusUpload(
            id=new_file_id(),
            owner=caller.owner,
            key_id=caller.key_id,
            length=length,
            offset=length if is_final(concat) and length is not None else 0,
            metadata_header=metadata_header,
            concat=concat,
            metadata=metadata,
            state=OPEN,
            file_id=None,
            lease_owner=None,
            lease_until=None,
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.tus_expiry),
        )
        # The row first: the sweep spares the bytes of the uploads that rows name.
        await self.uploads.create(upload)
        try:
            await self.partials.create(upload.id)
        except BaseException:
            await asyncio.shield(self.terminate_now(upload.id))
            raise
        return upload

    async def start(
        self,
        caller: Principal,
        length: int | None,
        metadata_header: str | None,
        body: AsyncIterator[bytes] | None,
        checksum: Checksum | None = None,
        partial: bool = False,
    ) -> Appended:
        """Creation, with the first bytes when the request carries them
        (creation-with-upload); an upload of length 0 is complete at once."""
        upload = await self.create(
            caller, length, metadata_header, concat=PARTIAL if partial else None
        )
        if body is None and (length != 0 or partial):
            return Appended(upload)
        return await self.append(caller, upload.id, 0, body or _nothing(), checksum=checksum)

    async def join(
        self, caller: Principal, concat: str, part_ids: list[str], metadata_header: str | None
    ) -> Appended:
        """A final upload (concatenation): the finished partial uploads, in order, become
        one file at once; the partial uploads end."""
        if not part_ids or len(set(part_ids)) != len(part_ids):
            raise InvalidTusRequest("Upload-Concat: final names each partial upload once")
        parts = [await self.get(caller, part_id) for part_id in part_ids]
        for part in parts:
            if part.concat != PARTIAL or part.state != OPEN or part.offset != part.length:
                raise InvalidTusRequest(f"upload {part.id} is not a finished partial upload")
        length = sum(part.offset for part in parts)
        upload = await self.create(caller, length, metadata_header, concat=concat)
        first = self.hashes.resume(parts[0].id, parts[0].offset)
        joined = await self.partials.join(
            upload.id, [(part.id, part.offset) for part in parts], first
        )
        self.hashes.keep(upload.id, length, joined)
        record = await self._complete(caller, upload)
        await self.uploads.remove(*part_ids)
        for part in parts:
            await self.partials.discard(part.id)
        return Appended(upload, record)

    # Reading -------------------------------------------------------------------------------

    async def get(self, caller: Principal, upload_id: str) -> TusUpload:
        """The upload, if the caller's key made it; 410 once an unfinished one expired."""
        try:
            upload = await self.uploads.get(upload_id)
        except ValueError:
            upload = None
        if upload is None or not upload.visible_to(caller.key_id, caller.admin):
            raise NotFound(f"no resumable upload with id {upload_id}")
        if upload.state != DONE and upload.expires_at <= utcnow():
            raise UploadExpired(f"resumable upload {upload_id} expired; start it again")
        return upload

    async def unfinished(
        self, caller: Principal, limit: int, after: str | None
    ) -> tuple[list[TusUpload], str | None]:
        page = await self.uploads.page(caller.key_id, caller.admin, limit + 1, after)
        more = len(page) > limit
        page = page[:limit]
        return page, (page[-1].id if more and page else None)

    # Appending -----------------------------------------------------------------------------

    async def append(
        self,
        caller: Principal,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        checksum: Checksum | None = None,
        length: int | None = None,
    ) -> Appended:
        """Write the body at ``offset``: 409 if the upload stands elsewhere, 423 while another
        request writes it. The body's bytes are durable when this returns."""
        lease = await self.writer.claim(caller, upload_id, offset)
        if lease is None:
            return await self._not_claimed(caller, upload_id, offset, checksum)
        slot = contextlib.ExitStack()
        try:
            upload = lease.upload
            _check_request(upload, checksum)
            upload = await self._set_length(caller, upload, length)
            # With no length to reserve, the quota bounds each chunk as it arrives (what the
            # upload holds is in the usage already).
            room = None
            if upload.length is None:
                room = (await self.file_service.policy(caller)).bytes_left()
            slot.enter_context(self.file_service.upload_slots.hold(caller.key_id))
        except BaseException:
            await self.writer.release(lease)
            raise
        with slot:
            upload = await self.writer.write(lease, upload, body, checksum, room=room)
        if upload.concat != PARTIAL and upload.offset == upload.length:
            return Appended(upload, await self._complete(caller, upload))
        return Appended(upload)

    async def _not_claimed(
        self, caller: Principal, upload_id: str, offset: int, checksum: Checksum | None
    ) -> Appended:
        """Why a PATCH found no upload to write at ``offset``, as its answer; or, for the
        PATCH that completed it sent again, the file it became."""
        upload = await self.get(caller, upload_id)
        _check_request(upload, checksum)
        if upload.state == DONE:
            if offset != upload.offset:
                raise OffsetMismatch(
                    f"the upload is complete at {upload.offset}", offset=upload.offset
                )
            return Appended(upload, await self._file_of(caller, upload))
        if offset != upload.offset:
            raise OffsetMismatch(
                f"the upload stands at offset {upload.offset}, not {offset}", offset=upload.offset
            )
        raise UploadLocked(f"another request is writing upload {upload.id}; try again shortly")

    async def _set_length(
        self, caller: Principal, upload: TusUpload, length: int | None
    ) -> TusUpload:
        """A deferred length, given now (once), and reserved of the quota."""
        if length is None:
            return upload
        if upload.length is not None:
            if length != upload.length:
                raise InvalidTusRequest("Upload-Length cannot change once set")
            return upload
        limit = self.settings.max_file_size
        if length > limit:
            raise PayloadTooLarge(
                f"the upload is larger than the limit of {limit} bytes", limit=limit
            )
        if length < upload.offset:
            raise InvalidTusRequest(f"Upload-Length {length} is below the offset {upload.offset}")
        # What the upload holds is in the usage already; the rest is reserved now.
        policy = await self.file_service.policy(caller)
        policy.take_bytes(length - upload.offset, length, clean_filename(None))
        await self.uploads.set_length(upload.id, length)
        return replace(upload, length=length)

    # Completion ----------------------------------------------------------------------------

    async def _complete(self, caller: Principal, upload: TusUpload) -> FileRecord:
        """The complete bytes become a file: hashed, sniffed, checked, moved into storage and
        recorded with their tasks. Refused (type, whole-file checksum): the upload ends."""
        known = self.hashes.take(upload.id, upload.offset)
        finished = await self.partials.finish(upload.id, upload.offset, known)
        metadata = upload.metadata or {}
        expected = metadata.get("sha256")
        name = clean_filename(metadata.get("filename"))
        content_type = sniff_content_type(finished.head)
        try:
            if expected is not None and expected != finished.sha256:
                raise TusChecksumMismatch(
                    f"the upload's sha256 is {finished.sha256}, not the {expected} in its"
                    " metadata; the upload was ended",
                    expected=expected,
                    actual=finished.sha256,
                )
            policy = await self.file_service.policy(caller)
            policy.check_type(content_type, name)
        except BaseException:
            await self.terminate_now(upload.id)
            raise
        # The upload's id is its file's: on S3 the parts are assembled at the file's key.
        file_id = upload.id
        key = original_key(file_id)
        await self.partials.commit(upload.id, self.storage, key)
        new_file = NewFile(
            id=file_id,
            filename=name,
            content_type=content_type,
            size=upload.offset,
            sha256=finished.sha256,
            storage_key=key,
            verified=expected is not None,
        )
        # The upload's own reservation is in the usage the quota is checked against: not
        # counted twice, as the upload is no longer open once recorded.
        (record,) = await self.file_service.record(
            caller, [new_file], None, audit_detail={"resumable": True}
        )
        await self.uploads.finish(upload.id, record.id)
        await self.partials.release(upload.id)
        return record

    async def _file_of(self, caller: Principal, upload: TusUpload) -> FileRecord | None:
        if upload.file_id is None:
            return None
        with contextlib.suppress(NotFound):
            return await self.file_service.get(caller, upload.file_id)
        return None

    # Termination ---------------------------------------------------------------------------

    async def terminate(self, caller: Principal, upload_id: str) -> None:
        """End an upload. One that became a file only loses its row: the file is its own
        (``DELETE /v1/files/{id}`` removes it)."""
        upload = await self.get(caller, upload_id)
        if not await self.uploads.terminate(upload.id):
            raise UploadLocked(f"another request is writing upload {upload_id}")
        self.hashes.forget(upload.id)
        if upload.state != DONE:
            await self.partials.discard(upload.id)

    async def terminate_now(self, upload_id: str) -> None:
        self.hashes.forget(upload_id)
        await self.uploads.remove(upload_id)
        await self.partials.discard(upload_id)


def _check_request(upload: TusUpload, checksum: Checksum | None) -> None:
    if checksum is not None and checksum.algorithm not in CHECKSUMS:
        raise ChecksumAlgorithmUnsupported(
            f"checksum algorithm {checksum.algorithm!r} is not one of {', '.join(CHECKSUMS)}"
        )
    if is_final(upload.concat):
        raise Forbidden("a final upload is complete when created: it takes no PATCH")


def is_final(concat: str | None) -> bool:
    return concat is not None and concat.startswith(FINAL)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""
