"""Thumbnailing: one decode per image in the process pool, one output per configured size."""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from pathlib import Path

from uploads_api.db.models import Task
from uploads_api.media import images, placeholders
from uploads_api.media.outputs import Thumbnail
from uploads_api.storage import thumbnail_key, thumbnail_prefix
from uploads_api.tasks.base import PermanentError, TaskSkipped
from uploads_api.tasks.file_task import FileTask
from uploads_api.tasks.plan import has_thumbnails

log = logging.getLogger(__name__)


class ThumbnailTask(FileTask):
    name = "thumbnails"

    async def run(self, task: Task) -> None:
        record = await self.file_of(task)
        if record is None:
            return
        formats = self.settings.image_formats
        # The same rule as at upload (a retried or older row may still ask).
        if not has_thumbnails(record.content_type, record.size, formats):
            raise TaskSkipped(f"no thumbnails for {record.content_type}")
        fmt = self.settings.thumbnail_format
        async with (
            self.workspace.local_copy(self.storage, record.storage_key, record.id) as source,
            self.workspace.scratch(record.id, "thumbnails") as out_dir,
        ):
            try:
                made = await self.pool.run(
                    images.make_thumbnails,
                    str(source),
                    str(out_dir),
                    self.settings.thumbnail_sizes,
                    fmt,
                    formats,
                )
            except images.ImageError as exc:
                raise PermanentError(str(exc)) from exc
            smallest = min(made, key=lambda rendition: rendition.thumbnail.size)
            placeholder = await self.pool.run(placeholders.thumbhash_of, smallest.path)
            # A new version on every run, so browsers never show a stale cached thumbnail.
            version = secrets.token_hex(4)
            thumbnails: list[Thumbnail] = []
            for rendition in sorted(made, key=lambda rendition: rendition.thumbnail.size):
                thumb = replace(rendition.thumbnail, version=version)
                # Same key on every run: a thumbnail written twice is the same thumbnail.
                key = thumbnail_key(record.id, thumb.size, thumb.extension)
                await self.storage.put_file(key, Path(rendition.path))
                thumbnails.append(thumb)
        recorded = await self.files.set_thumbnails(
            record.id, thumbnails, {"thumbhash": placeholder}
        )
        if not recorded:
            # Deleted while we worked: take back what we just wrote.
            await self.storage.delete_prefix(thumbnail_prefix(record.id))
