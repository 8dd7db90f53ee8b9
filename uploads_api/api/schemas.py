"""API schemas, kept apart from the tables they are built from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from uploads_api.db.models import AuditEntry, FileRecord, Task


def utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


class TaskOut(BaseModel):
    id: int
    name: str
    state: str = Field(description="queued, running, succeeded, failed or skipped")
    attempts: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        return cls(
            id=task.id,
            name=task.name,
            state=task.state,
            attempts=task.attempts,
            error=task.error,
            started_at=utc(task.started_at),
            finished_at=utc(task.finished_at),
        )


class TaskWithFileOut(TaskOut):
    file_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, task: Task) -> TaskWithFileOut:
        base = TaskOut.of(task).model_dump()
        return cls(**base, file_id=task.file_id, created_at=utc(task.created_at))


class ThumbnailOut(BaseModel):
    size: int
    width: int
    height: int
    content_type: str
    url: str


class Links(BaseModel):
    self: str
    content: str


class FileOut(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str = Field(description="of the stored bytes")
    received_sha256: str = Field(
        description="of the bytes as received; differs from sha256 when metadata was stripped"
    )
    checksum_verified: bool = Field(description="the client's checksum was given and matched")
    created_at: datetime
    status: str = Field(description="processing, ready or failed")
    metadata: dict[str, Any] | None
    thumbnails: list[ThumbnailOut]
    tasks: list[TaskOut]
    links: Links

    @classmethod
    def of(cls, record: FileRecord) -> FileOut:
        base = f"/v1/files/{record.id}"
        return cls(
            id=record.id,
            filename=record.filename,
            content_type=record.content_type,
            size=record.size,
            sha256=record.sha256,
            received_sha256=record.received_sha256 or record.sha256,
            checksum_verified=record.verified,
            created_at=record.created_at.replace(tzinfo=UTC),
            status=record.status,
            metadata=record.metadata,
            thumbnails=[
                ThumbnailOut(
                    size=thumb.size,
                    width=thumb.width,
                    height=thumb.height,
                    content_type=thumb.content_type,
                    url=f"{base}/thumbnails/{thumb.size}?v={thumb.version or '0'}",
                )
                for thumb in record.thumbnails
            ],
            tasks=[TaskOut.of(task) for task in record.tasks],
            links=Links(self=base, content=f"{base}/content"),
        )


def render_file(record: FileRecord) -> dict[str, Any]:
    """A file as the API answers it, as JSON: the ``data`` of its events."""
    return FileOut.of(record).model_dump(mode="json")


class FilesCreated(BaseModel):
    files: list[FileOut]


class FileList(BaseModel):
    files: list[FileOut]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


class TaskList(BaseModel):
    tasks: list[TaskWithFileOut]
    next_cursor: int | None = Field(description="pass as ?cursor= for the next page")


class AuditEntryOut(BaseModel):
    id: int
    at: datetime = Field(description="when (UTC); for auth.failed, the minute's first failure")
    action: str = Field(description="key.created, file.uploaded, auth.failed... (docs/api.md)")
    owner: str | None = Field(description="the owner of the key that acted")
    file_id: str | None
    address: str | None = Field(description="the client's IP address")
    detail: dict[str, Any] | None
    count: int = Field(description="auth.failed: failures from the address that minute; else 1")

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        assert entry.id is not None, "a stored row has an id"
        return cls(
            id=entry.id,
            at=entry.at.replace(tzinfo=UTC),
            action=entry.action,
            owner=entry.owner,
            file_id=entry.file_id,
            address=entry.address,
            detail=entry.detail,
            count=entry.count,
        )


class AuditList(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


class HashCheck(BaseModel):
    sha256: list[Annotated[str, Field(pattern="^[0-9a-fA-F]{64}$")]] = Field(max_length=10_000)


class HashCheckResult(BaseModel):
    present: list[str] = Field(description="the hashes that already have a file")
    missing: list[str]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
