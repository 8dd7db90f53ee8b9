"""How a file looks from outside: the JSON of a ``FileRecord`` with its tasks and
thumbnails, as the API answers it and as its events carry it (``render_file``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from uploads_api.db.models import FileRecord, Task


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
    sha256: str | None = Field(
        description="of the stored bytes; null until a direct upload's verify task has run"
    )
    received_sha256: str | None = Field(
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
            # A direct upload's hash is "" until its verify task has read the bytes back.
            sha256=record.sha256 or None,
            received_sha256=record.received_sha256 or record.sha256 or None,
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
