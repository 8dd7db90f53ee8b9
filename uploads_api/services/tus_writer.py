"""One PATCH's chunk, written under a lease on the upload's row: the one writer across
processes, answered only once the bytes are durable and the new offset committed.

The lease is taken in the same statement that finds the upload where the PATCH says it
stands (open, unexpired, the caller's, at its offset), so a chunk costs two short write
transactions and no read; a PATCH that does not get it learns why from an ordinary read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta

from uploads_api.auth import Principal
from uploads_api.config import Settings
from uploads_api.db.tables import utcnow
from uploads_api.db.tus_uploads import TusUpload, TusUploadRepository
from uploads_api.errors import (
    PayloadTooLarge,
    QuotaExceeded,
    TusChecksumMismatch,
    UploadLocked,
)
from uploads_api.services.tus_hashes import RunningHashes
from uploads_api.storage.partials import LeaseLapsed, PartialStore, PastLimit

log = logging.getLogger(__name__)

# A writer's lease on an upload: renewed while its body streams, taken over once it lapses.
LEASE_SECONDS = 10.0
RENEW_EVERY = 3.0
# A writer stops taking bytes this long before its lease would lapse unrenewed (a stalled
# loop, a database that did not answer): never writing once another may have taken over.
FENCE_MARGIN = 2.0
# tus checksum names -> hashlib's.
CHECKSUMS = {"sha1": "sha1", "sha256": "sha256", "md5": "md5"}


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # as tus names it
    digest: bytes


@dataclass(frozen=True)
class Lease:
    """The upload as it stood when this writer took it."""

    upload: TusUpload
    writer: str


class _Fence:
    """Until when this process may go on writing under its lease, by its own clock."""

    def __init__(self) -> None:
        self.until = time.monotonic() + LEASE_SECONDS - FENCE_MARGIN

    def held(self) -> bool:
        return time.monotonic() < self.until


class ChunkWriter:
    def __init__(
        self,
        settings: Settings,
        uploads: TusUploadRepository,
        partials: PartialStore,
        hashes: RunningHashes,
    ) -> None:
        self.settings = settings
        self.uploads = uploads
        self.partials = partials
        self.hashes = hashes

    async def claim(self, caller: Principal, upload_id: str, offset: int) -> Lease | None:
        """The lease, if the upload is open, unexpired, the caller's, at ``offset``, and
        nobody else writes it; ``None`` otherwise (the caller finds out which)."""
        writer = secrets.token_hex(8)
        try:
            upload = await self.uploads.claim(
                upload_id, writer, LEASE_SECONDS, offset, caller.key_id, caller.admin
            )
        except ValueError:
            return None
        return None if upload is None else Lease(upload, writer)

    async def release(self, lease: Lease) -> None:
        await asyncio.shield(self.uploads.release(lease.upload.id, lease.writer))

    async def write(
        self,
        lease: Lease,
        upload: TusUpload,
        body: AsyncIterator[bytes],
        checksum: Checksum | None,
        *,
        room: int | None = None,
    ) -> TusUpload:
        """Append ``body`` at the upload's offset and commit the new offset, which gives the
        lease up; a write that ends before that gives it up apart. ``room``: what the
        owner's quota still allows, for an upload of no declared length."""
        fence = _Fence()
        renewing = asyncio.create_task(self._renew(lease, fence))
        offset = upload.offset
        advanced = False
        try:
            limit = (
                upload.length if upload.length is not None else self.settings.max_file_size
            ) - offset
            by_quota = room is not None and room < limit
            if room is not None:
                limit = min(limit, room)
            algorithm = CHECKSUMS[checksum.algorithm] if checksum else None
            running = self.hashes.resume(upload.id, offset)
            try:
                appended = await self.partials.append(
                    upload.id, offset, _fenced(body, fence), limit, algorithm, running
                )
            except PastLimit as exc:
                if by_quota:
                    raise QuotaExceeded(
                        f"this chunk would take the owner past the quota; {limit} bytes are"
                        " left, and nothing of the chunk was kept",
                        quota="UPLOADS_QUOTA_BYTES",
                    ) from exc
                raise PayloadTooLarge(str(exc), limit=upload.length) from exc
            except LeaseLapsed as exc:
                raise UploadLocked(
                    f"the lease on upload {upload.id} lapsed mid-chunk; send it again"
                ) from exc
            if checksum is not None and appended.digest != checksum.digest:
                await self.partials.discard_chunk(upload.id, offset)
                raise TusChecksumMismatch(
                    f"the chunk's {checksum.algorithm} does not match Upload-Checksum; it was"
                    " discarded and the offset is unchanged"
                )
            new_offset = offset + appended.written
            expires = utcnow() + timedelta(seconds=self.settings.tus_expiry)
            advanced = await self.uploads.advance(upload.id, lease.writer, new_offset, expires)
            if not advanced:
                raise UploadLocked(f"upload {upload.id} was taken over by another request")
            self.hashes.keep(upload.id, new_offset, running)
            if appended.cut_by is not None:
                # What arrived is kept (HEAD says where to go on from); the request itself
                # failed, and its answer says so.
                raise appended.cut_by
            return replace(upload, offset=new_offset, expires_at=expires)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            if not advanced:
                await self.release(lease)

    async def _renew(self, lease: Lease, fence: _Fence) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            asked = time.monotonic()
            try:
                renewed = await self.uploads.renew_lease(
                    lease.upload.id, lease.writer, LEASE_SECONDS
                )
            except Exception:
                # The fence lapses by itself if no renewal gets through.
                log.warning(
                    "renewing the lease on upload %s failed", lease.upload.id, exc_info=True
                )
                continue
            if not renewed:
                fence.until = 0.0
                return
            fence.until = asked + LEASE_SECONDS - FENCE_MARGIN


async def _fenced(body: AsyncIterator[bytes], fence: _Fence) -> AsyncIterator[bytes]:
    async for chunk in body:
        if not fence.held():
            raise LeaseLapsed("the writer's lease lapsed mid-body")
        yield chunk
