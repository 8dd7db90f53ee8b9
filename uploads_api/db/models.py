"""Plain records passed between the repository and the layers above it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
    metadata: dict[str, Any] | None
    thumbnails: list[dict[str, Any]]
    tasks: list[Task] = field(default_factory=list)
