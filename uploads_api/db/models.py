"""Plain records passed between the repositories and the layers above them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, get_args

from uploads_api.media.outputs import Thumbnail

# Task names; one module each under uploads_api/tasks.
THUMBNAILS = "thumbnails"
METADATA = "metadata"
CLEANUP = "cleanup"
VERIFY = "verify"
FILE_TASKS = (METADATA, THUMBNAILS, CLEANUP)
# A direct upload's bytes never passed through the API: they are hashed from storage first.
DIRECT_FILE_TASKS = (VERIFY, *FILE_TASKS)

QUEUED, RUNNING, SUCCEEDED, FAILED, SKIPPED = "queued", "running", "succeeded", "failed", "skipped"
TASK_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, SKIPPED)
ACTIVE_STATES = (QUEUED, RUNNING)

PROCESSING, READY, FILE_FAILED = "processing", "ready", "failed"
FILE_STATUSES = (PROCESSING, READY, FILE_FAILED)

# A listing cursor is the position of the last file of a page: its creation time in
# microseconds since the epoch, and its id. Any string of this form is a valid position,
# so a cursor is never refused once it matches.
CURSOR_PATTERN = "^[0-9]{1,16}_[0-9a-f]{32}$"

# What the audit log records; a new action is added here first.
AuditAction = Literal[
    "key.created",
    "key.revoked",
    "file.uploaded",
    "file.downloaded",
    "file.deleted",
    "file.retried",
    "auth.failed",
    "webhook.created",
    "webhook.updated",
    "webhook.deleted",
]
AUDIT_ACTIONS: tuple[AuditAction, ...] = get_args(AuditAction)
# Counted into one row per address and minute, never one row each.
AUTH_FAILED: AuditAction = "auth.failed"
# An audit cursor is the position of a page's last row: its time in microseconds since the
# epoch and its id. Any string of this form is a valid position.
AUDIT_CURSOR_PATTERN = "^[0-9]{1,16}_[0-9]{1,18}$"


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
    # Task name -> the payload its row is created with.
    task_payloads: dict[str, dict[str, Any]] = field(default_factory=dict)


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


@dataclass(frozen=True)
class AuditEntry:
    """One audit row. ``id`` is ``None`` until stored; ``at`` is naive UTC, as every time
    in the database. For ``auth.failed``, ``count`` failures from ``address`` in the
    minute of ``at``; 1 for every other action."""

    at: datetime
    action: AuditAction
    owner: str | None = None
    file_id: str | None = None
    address: str | None = None
    detail: dict[str, Any] | None = None
    count: int = 1
    id: int | None = None

    def counted_with(self, later: AuditEntry) -> AuditEntry:
        """This tally with a later one of the same address and minute added."""
        return replace(self, count=self.count + later.count)
