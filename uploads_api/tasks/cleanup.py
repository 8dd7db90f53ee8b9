"""Cleanup: scratch space of a processed upload, the bytes of a deleted file (its variants
go with its thumbnails), and the sweep of temp files and blobs that nothing references any
more, of audit rows past their retention, of the variants that take an owner past
UPLOADS_VARIANT_CACHE_BYTES, of direct uploads past their expiry, and of idempotency keys
past UPLOADS_IDEMPOTENCY_TTL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

from uploads_api import metrics
from uploads_api.config import Settings
from uploads_api.db.audit import AuditRepository
from uploads_api.db.deliveries import DeliveryRepository
from uploads_api.db.direct_uploads import DirectUploadRepository
from uploads_api.db.files import FileRepository
from uploads_api.db.idempotency import IdempotencyRepository
from uploads_api.db.models import Task
from uploads_api.db.tables import utcnow
from uploads_api.db.tus_uploads import DONE, TusUploadRepository
from uploads_api.db.variants import VariantRepository
from uploads_api.storage import DirectTransfer, PendingUploads, Storage, thumbnail_prefix
from uploads_api.storage.keys import file_id_of, original_key
from uploads_api.storage.partials import PartialStore
from uploads_api.storage.tempnames import writer_is_gone
from uploads_api.tasks.workspace import Workspace

log = logging.getLogger(__name__)

# Variants looked at per query while an owner is over the cap.
EVICT_BATCH = 200


class CleanupTask:
    name = "cleanup"

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        files: FileRepository,
        audit: AuditRepository,
        workspace: Workspace,
        temp_dir: Path,
        deliveries: DeliveryRepository,
        variants: VariantRepository,
        direct_uploads: DirectUploadRepository,
        tus_uploads: TusUploadRepository,
        partials: PartialStore,
        idempotency_keys: IdempotencyRepository,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.files = files
        self.audit = audit
        self.workspace = workspace
        self.temp_dir = temp_dir
        self.deliveries = deliveries
        self.variants = variants
        self.direct_uploads = direct_uploads
        self.tus_uploads = tus_uploads
        self.partials = partials
        self.idempotency_keys = idempotency_keys

    async def run(self, task: Task) -> None:
        payload = task.payload or {}
        if payload.get("sweep"):
            await self.sweep()
            return
        assert task.file_id is not None
        await self.workspace.remove(task.file_id)
        if payload.get("deleted"):
            await self.storage.delete(payload["storage_key"])
            await self.storage.delete_prefix(thumbnail_prefix(task.file_id))

    async def sweep_local(self, cutoff: float | None = None) -> int:
        """This machine's temp files and scratch: see ``remove_abandoned``."""
        if cutoff is None:
            cutoff = time.time() - self.settings.temp_ttl
        return await asyncio.to_thread(remove_abandoned, self.temp_dir, cutoff)

    async def sweep(self) -> dict[str, int]:
        """Remove temp files and scratch dirs older than the TTL, unreferenced blobs,
        events past UPLOADS_EVENT_RETENTION, audit rows past UPLOADS_AUDIT_RETENTION,
        variants past UPLOADS_VARIANT_CACHE_BYTES, and idempotency keys past their expiry."""
        cutoff = time.time() - self.settings.temp_ttl
        removed_temp = await self.sweep_local(cutoff)
        stale: dict[str, list[str]] = {}
        for prefix in ("originals", "thumbnails"):
            async for key, mtime in self.storage.list(prefix):
                file_id = file_id_of(key)
                # Young blobs may belong to an upload whose record is being committed.
                if file_id and mtime < cutoff:
                    stale.setdefault(file_id, []).append(key)
        removed_direct = await self.abort_expired_direct_uploads()
        removed_resumable = await self.remove_expired_resumable_uploads()
        if isinstance(self.storage, PendingUploads):
            removed_temp += await self._abort_abandoned(self.storage, cutoff)
        referenced = await self.files.existing_file_ids(stale)
        # An unfinished resumable upload's bytes may wait at its file's key (on S3).
        referenced |= await self.tus_uploads.open_ids()
        removed_blobs = 0
        for file_id, keys in stale.items():
            if file_id in referenced:
                continue
            for key in keys:
                await self.storage.delete(key)
                removed_blobs += 1
        now = utcnow()
        removed_events = await self.deliveries.sweep(
            now - timedelta(seconds=self.settings.event_retention)
        )
        removed_audit = await self.audit.delete_before(
            now - timedelta(seconds=self.settings.audit_retention)
        )
        removed_variants = await self.cap_variants()
        removed_keys = await self.idempotency_keys.remove_expired()
        removed = {
            "temp": removed_temp,
            "blobs": removed_blobs,
            "events": removed_events,
            "audit": removed_audit,
            "variants": removed_variants,
            "direct_uploads": removed_direct,
            "resumable_uploads": removed_resumable,
            "idempotency_keys": removed_keys,
        }
        if any(removed.values()):
            log.info(
                "sweep removed %d temp entries, %d blobs, %d events, %d audit rows, %d variants,"
                " %d expired direct uploads, %d expired resumable uploads, %d expired"
                " idempotency keys",
                *removed.values(),
            )
        return removed

    async def _abort_abandoned(self, storage: PendingUploads, cutoff: float) -> int:
        """Uploads a killed process began and never finished or aborted; not the direct and
        resumable uploads clients are still sending. Those are read after the listing: an
        upload's row is written before its S3 upload begins, so each one listed that is
        still open has its row by then."""
        pending = await storage.pending_uploads(cutoff)
        if not pending:
            return 0
        keep = await self._open_keys()
        abandoned = [(key, upload_id) for key, upload_id in pending if key not in keep]
        for key, upload_id in abandoned:
            await storage.abort_upload(key, upload_id)
        return len(abandoned)

    async def _open_keys(self) -> set[str]:
        """The keys of uploads clients are still sending: direct ones, resumable ones."""
        resumable = {original_key(upload_id) for upload_id in await self.tus_uploads.open_ids()}
        return await self.direct_uploads.open_keys() | resumable

    async def abort_expired_direct_uploads(self) -> int:
        """Abort direct uploads past their expiry: their parts, then their row. One whose
        file was recorded just before a crash only loses its row (the object is the file's)."""
        if not isinstance(self.storage, DirectTransfer):
            return 0
        aborted = 0
        for upload in await self.direct_uploads.expired():
            if upload.upload_id:  # empty: a start that failed before S3 answered
                await self.storage.abort_upload(upload.storage_key, upload.upload_id)
            await self.direct_uploads.remove(upload.id)
            aborted += 1
        return aborted

    async def remove_expired_resumable_uploads(self) -> int:
        """Resumable uploads past their expiry: the bytes, then the row (a finished one only
        has its row: the file is its own)."""
        removed = 0
        for upload in await self.tus_uploads.expired():
            if upload.state != DONE:
                await self.partials.discard(upload.id)
            await self.tus_uploads.remove(upload.id)
            removed += 1
        metrics.RESUMABLE_EXPIRED.inc(removed)
        return removed

    async def cap_variants(self) -> int:
        """Hold every owner's stored variants to UPLOADS_VARIANT_CACHE_BYTES, removing the
        least recently served first; drop the rows of variants whose file is gone (they
        went with its thumbnails). How many variants were removed."""
        await self.variants.forget_orphans()
        cap = self.settings.variant_cache_bytes
        removed = 0
        for owner, total in await self.variants.owners_over(cap):
            while total > cap:
                oldest = await self.variants.least_recent(owner, EVICT_BATCH)
                if not oldest:
                    break
                gone: list[str] = []
                for variant in oldest:
                    if total <= cap:
                        break
                    # The blob first: a row left by a crash here is only counted, and
                    # removed on a later sweep.
                    await self.storage.delete(variant.key)
                    gone.append(variant.key)
                    total -= variant.size
                await self.variants.forget(gone)
                removed += len(gone)
        metrics.VARIANTS_EVICTED.inc(removed)
        return removed


def remove_abandoned(root: Path, cutoff: float) -> int:
    """Temp files (``*.part``) and task scratch whose writer died, or that were last touched
    before ``cutoff``. Safe while other processes write there: live writers are left alone."""
    removed = 0
    for entry in root.glob("*.part"):
        with contextlib.suppress(FileNotFoundError):
            if writer_is_gone(entry.name) or entry.stat().st_mtime < cutoff:
                entry.unlink(missing_ok=True)
                removed += 1
    for file_dir in (root / "work").glob("*"):
        with contextlib.suppress(FileNotFoundError):
            for run in file_dir.iterdir():
                if writer_is_gone(run.name) or _newest_mtime(run) < cutoff:
                    shutil.rmtree(run, ignore_errors=True)
                    removed += 1
            with contextlib.suppress(OSError):
                file_dir.rmdir()  # only once empty
    return removed


def _newest_mtime(entry: Path) -> float:
    newest = entry.stat().st_mtime
    if entry.is_dir():
        for dirpath, _dirs, files in os.walk(entry):
            for name in files:
                newest = max(newest, (Path(dirpath) / name).stat().st_mtime)
    return newest
