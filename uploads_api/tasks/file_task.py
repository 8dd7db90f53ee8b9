"""What the metadata and thumbnail tasks share: their services, and the file they work on."""

from __future__ import annotations

from dataclasses import dataclass

from uploads_api.config import Settings
from uploads_api.db.files import FileRepository
from uploads_api.db.models import FileRecord, Task
from uploads_api.media import audio, images, pdf, video
from uploads_api.storage import Storage
from uploads_api.tasks.pool import ImagePool
from uploads_api.tasks.workspace import Workspace

# What each decoder raises for a file it cannot read: retrying will not help.
UNREADABLE: tuple[type[Exception], ...] = (
    images.ImageError,
    video.VideoError,
    audio.AudioError,
    pdf.DocumentError,
)


@dataclass
class FileTask:
    """A task about one file's bytes, with its services injected."""

    settings: Settings
    storage: Storage
    files: FileRepository
    pool: ImagePool
    workspace: Workspace

    async def file_of(self, task: Task) -> FileRecord | None:
        """The task's file, or ``None`` if it was deleted meanwhile (then there is no work)."""
        assert task.file_id is not None
        return await self.files.get_file(task.file_id)
