"""Plain records passed between the repository and the layers above it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from uploads_api.errors import QuotaExceeded

# Task names; one module each under uploads_api/tasks.
THUMBNAILS = "thumbnails"
METADATA = "metadata"
CLEANUP = "cleanup"
FILE_TASKS = (METADATA, THUMBNAILS, CLEANUP)

QUEUED, RUNNING, SUCCEEDED, FAILED, SKIPPED = "queued", "running", "succeeded", "failed", "skipped"
TASK_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, SKIPPED)
ACTIVE_STATES = (QUEUED, RUNNING)

PROCESSING, READY, FILE_FAILED = "processing", "ready", "failed"
FILE_STATUSES = (PROCESSING, READY, FILE_FAILED)


@dataclass(frozen=True)
class NewFile:
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    storage_key: str
    owner: str | None = None
    verified: bool = False
    # Known at upload: the basic facts, and tasks with nothing to do -> (state, note).
    metadata: dict[str, Any] | None = None
    settled: dict[str, tuple[str, str | None]] = field(default_factory=dict)


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


@dataclass(frozen=True)
class Task:
    id: int
    file_id: str | None
    name: str
    state: str
    attempts: int
    max_attempts: int
    error: str | None
    payload: dict[str, Any] | None
    created_at: datetime
    run_after: datetime
    lease_owner: str | None
    lease_until: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class FileRecord:
    id: str
    owner: str | None
    filename: str
    content_type: str
    size: int
    sha256: str
    storage_key: str
    created_at: datetime
    status: str
    verified: bool
    metadata: dict[str, Any] | None
    thumbnails: list[dict[str, Any]]
    tasks: list[Task] = field(default_factory=list)
