"""API schemas, kept apart from the tables they are built from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from uploads_api.db.models import AuditEntry, Task
from uploads_api.file_json import FileOut, TaskOut, utc


class TaskWithFileOut(TaskOut):
    file_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, task: Task) -> TaskWithFileOut:
        base = TaskOut.of(task).model_dump()
        return cls(**base, file_id=task.file_id, created_at=utc(task.created_at))


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
