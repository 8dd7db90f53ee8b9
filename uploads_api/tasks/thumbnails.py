"""Thumbnailing: one decode per image in the process pool, one output per configured size."""

from __future__ import annotations

import logging
from pathlib import Path

from uploads_api import imaging, placeholders
from uploads_api.config import Settings
from uploads_api.db.models import Task
from uploads_api.db.repository import Repository
from uploads_api.storage import Storage, thumbnail_key, thumbnail_prefix
from uploads_api.tasks.base import PermanentError, TaskSkipped
from uploads_api.tasks.formats import decoder_format
from uploads_api.tasks.pool import ImagePool
from uploads_api.tasks.workspace import Workspace

log = logging.getLogger(__name__)

EXTENSIONS = {"webp": "webp", "jpeg": "jpg", "png": "png", "avif": "avif"}


class ThumbnailTask:
    name = "thumbnails"

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        repository: Repository,
        pool: ImagePool,
        workspace: Workspace,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.repository = repository
        self.pool = pool
        self.workspace = workspace

    async def run(self, task: Task) -> None:
        assert task.file_id is not None
        record = await self.repository.get_file(task.file_id)
        if record is None:
            return
        formats = self.settings.image_formats
        if record.size == 0 or not decoder_format(record.content_type, formats):
            raise TaskSkipped(f"no thumbnails for {record.content_type}")
        source = await self.workspace.local_path(self.storage, record.storage_key, record.id)
        out_dir = await self.workspace.make_dir(record.id, f"thumbnails-{task.attempts}")
        fmt = self.settings.thumbnail_format
        try:
            made = await self.pool.run(
                imaging.make_thumbnails,
                str(source),
                str(out_dir),
                self.settings.thumbnail_sizes,
                fmt,
                formats,
            )
        except imaging.ImageError as exc:
            raise PermanentError(str(exc)) from exc
        smallest = min(made, key=lambda thumb: thumb["size"])
        placeholder = await self.pool.run(placeholders.thumbhash_of, smallest["path"])
        thumbnails = []
        for thumb in made:
            # Same key on every run: a thumbnail written twice is the same thumbnail.
            key = thumbnail_key(record.id, thumb["size"], EXTENSIONS[fmt])
            await self.storage.put_file(key, Path(thumb["path"]))
            thumbnails.append({k: v for k, v in thumb.items() if k != "path"})
        thumbnails.sort(key=lambda thumb: thumb["size"])
        if not await self.repository.set_thumbnails(record.id, thumbnails):
            # Deleted while we worked: take back what we just wrote.
            await self.storage.delete_prefix(thumbnail_prefix(record.id))
            return
        await self.repository.merge_metadata(record.id, {"thumbhash": placeholder})
