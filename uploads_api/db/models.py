"""Plain records passed between the repositories and the layers above them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from uploads_api.media.outputs import Thumbnail

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

# A listing cursor is the position of the last file of a page: its creation time in
# microseconds since the epoch, and its id. Any string of this form is a valid position,
# so a cursor is never refused once it matches.
CURSOR_PATTERN = "^[0-9]{1,16}_[0-9a-f]{32}$"


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
    # The hash of the bytes as the client sent them, when stripping metadata changed them.
    received_sha256: str | None = None
    # Known at upload: the basic facts, and tasks with nothing to do -> (state, note).
    metadata: dict[str, Any] | None = None
    settled: dict[str, tuple[str, str | None]] = field(default_factory=dict)


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
    received_sha256: str | None
    metadata: dict[str, Any] | None
    thumbnails: list[Thumbnail]
    tasks: list[Task] = field(default_factory=list)
