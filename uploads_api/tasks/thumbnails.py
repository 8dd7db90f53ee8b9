"""Previews: one decode in the process pool (an image; a video's frame about 10 % in; an
audio file's cover art; a PDF's first page), one thumbnail per configured size, and a
ThumbHash placeholder from the smallest."""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from pathlib import Path

from uploads_api.db.models import Task
from uploads_api.media import audio, images, pdf, placeholders, video
from uploads_api.media.images import Rendition
from uploads_api.media.outputs import Thumbnail
from uploads_api.storage import thumbnail_key, thumbnail_prefix
from uploads_api.tasks.base import PermanentError, TaskSkipped
from uploads_api.tasks.file_task import UNREADABLE, FileTask
from uploads_api.tasks.plan import has_thumbnails

log = logging.getLogger(__name__)


class ThumbnailTask(FileTask):
    name = "thumbnails"

    async def run(self, task: Task) -> None:
        record = await self.file_of(task)
        if record is None:
            return
        decoders = self.settings.decoders
        kind = decoders.kind_of(record.content_type)
        # The same rule as at upload (a retried or older row may still ask).
        if kind is None or not has_thumbnails(record.content_type, record.size, decoders):
            raise TaskSkipped(f"no thumbnails for {record.content_type}")
        async with (
            self.workspace.local_copy(self.storage, record.storage_key, record.id) as source,
            self.workspace.scratch(record.id, "thumbnails") as out_dir,
        ):
            try:
                made = await self._render(kind, str(source), str(out_dir))
            except (audio.NoCover, pdf.EncryptedDocument) as exc:
                raise TaskSkipped(str(exc)) from exc
            except UNREADABLE as exc:
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

    async def _render(self, kind: str, source: str, out_dir: str) -> list[Rendition]:
        settings = self.settings
        sizes, fmt = settings.thumbnail_sizes, settings.thumbnail_format
        if kind == "image":
            return await self.pool.run(
                images.make_thumbnails, source, out_dir, sizes, fmt, settings.image_formats
            )
        if kind == "video":
            return await self.pool.run(
                video.make_video_thumbnails,
                *(source, out_dir, sizes, fmt),
                *(settings.video_formats, settings.max_image_pixels),
            )
        if kind == "audio":
            return await self.pool.run(
                audio.make_audio_thumbnails,
                *(source, out_dir, sizes, fmt),
                *(settings.image_formats, settings.max_image_pixels),
            )
        return await self.pool.run(
            pdf.make_pdf_thumbnails, source, out_dir, sizes, fmt, settings.max_image_pixels
        )
