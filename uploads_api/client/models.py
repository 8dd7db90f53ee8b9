"""What the API answers, as frozen dataclasses.

They mirror ``uploads_api/api/schemas.py`` but are the client's own, so that using the
client never imports the server. Fields the server adds later are ignored, not errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PROCESSING = "processing"
READY = "ready"
FAILED = "failed"


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _required_time(value: Any) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise ValueError("a required timestamp is missing")
    return parsed


@dataclass(frozen=True)
class Task:
    id: int
    name: str
    state: str
    attempts: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            state=str(data["state"]),
            attempts=int(data["attempts"]),
            error=data.get("error"),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
        )


@dataclass(frozen=True)
class TaskRecord(Task):
    """A row of ``GET /v1/tasks``: a task plus its file (``None`` for sweeps)."""

    file_id: str | None = None
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskRecord:
        base = Task.from_json(data)
        return cls(
            **vars(base),
            file_id=data.get("file_id"),
            created_at=_time(data.get("created_at")),
            raw=data,
        )


@dataclass(frozen=True)
class Thumbnail:
    size: int
    width: int
    height: int
    content_type: str
    url: str  # relative to the server: ``client.full_url(thumbnail.url)``

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Thumbnail:
        return cls(
            size=int(data["size"]),
            width=int(data["width"]),
            height=int(data["height"]),
            content_type=str(data["content_type"]),
            url=str(data["url"]),
        )


@dataclass(frozen=True)
class Links:
    self: str
    content: str


@dataclass(frozen=True)
class FileRecord:
    id: str
    filename: str
    content_type: str
    size: int
    # None until the server hashed the bytes: a direct upload is hashed after it completes.
    sha256: str | None
    created_at: datetime
    status: str
    metadata: dict[str, Any] | None
    thumbnails: tuple[Thumbnail, ...]
    tasks: tuple[Task, ...]
    links: Links
    # The client sent a checksum with the upload and the server found the bytes matched.
    checksum_verified: bool = False
    # Of the bytes as sent; differs from ``sha256`` when the server stripped metadata.
    received_sha256: str | None = None
    # The document as the server sent it, including fields newer than this client.
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileRecord:
        links = data.get("links") or {}
        base = f"/v1/files/{data['id']}"
        return cls(
            id=str(data["id"]),
            filename=str(data["filename"]),
            content_type=str(data["content_type"]),
            size=int(data["size"]),
            sha256=_optional_str(data.get("sha256")),
            received_sha256=_optional_str(data.get("received_sha256") or data.get("sha256")),
            created_at=_required_time(data["created_at"]),
            status=str(data["status"]),
            metadata=data.get("metadata"),
            thumbnails=tuple(Thumbnail.from_json(t) for t in data.get("thumbnails") or ()),
            tasks=tuple(Task.from_json(t) for t in data.get("tasks") or ()),
            links=Links(
                self=str(links.get("self", base)),
                content=str(links.get("content", f"{base}/content")),
            ),
            checksum_verified=bool(data.get("checksum_verified", False)),
            raw=data,
        )

    @property
    def processing(self) -> bool:
        return self.status == PROCESSING

    @property
    def failed_tasks(self) -> tuple[Task, ...]:
        return tuple(task for task in self.tasks if task.state == FAILED)

    def failure(self) -> str | None:
        """Why processing failed, as one line (``None`` unless the status is ``failed``)."""
        if self.status != FAILED:
            return None
        reasons = [f"{task.name}: {task.error or 'failed'}" for task in self.failed_tasks]
        return "; ".join(reasons) or "processing failed"


@dataclass(frozen=True)
class HashCheck:
    """Which hashes the server already has (``present``) and which it lacks (``missing``)."""

    present: tuple[str, ...]
    missing: tuple[str, ...]
