"""Metadata extraction: basic facts for every file; what a decoder reads from an image, a
video, an audio file's tags or a PDF, under ``metadata.<kind>``."""

from __future__ import annotations

import logging
from typing import Any

from uploads_api.db.models import Task
from uploads_api.media import audio, images, pdf, video
from uploads_api.tasks.base import PermanentError
from uploads_api.tasks.file_task import UNREADABLE, FileTask
from uploads_api.tasks.plan import basic_facts

log = logging.getLogger(__name__)


class MetadataTask(FileTask):
    name = "metadata"

    async def run(self, task: Task) -> None:
        record = await self.file_of(task)
        if record is None:
            return  # deleted meanwhile: nothing to describe
        # The basic facts were written with the record; the task adds what the bytes tell.
        basic = basic_facts(record.content_type, record.size, record.sha256)
        if not record.sha256:
            del basic["sha256"]  # a direct upload's: its verify task writes the hash
        kind = self.settings.decoders.kind_of(record.content_type)
        details: dict[str, Any] = {}
        if record.size > 0 and kind is not None:
            async with self.workspace.local_copy(
                self.storage, record.storage_key, record.id
            ) as path:
                try:
                    details[kind] = await self._read(kind, str(path))
                except UNREADABLE as exc:
                    raise PermanentError(f"cannot read {kind} metadata: {exc}") from exc
        await self.files.merge_metadata(record.id, {**basic, **details})

    async def _read(self, kind: str, path: str) -> dict[str, Any]:
        settings = self.settings
        if kind == "image":
            return await self.pool.run(images.read_image_metadata, path, settings.image_formats)
        if kind == "video":
            return await self.pool.run(
                video.read_video_metadata, path, settings.video_formats, settings.max_image_pixels
            )
        if kind == "audio":
            return await self.pool.run(audio.read_audio_metadata, path)
        return await self.pool.run(pdf.read_pdf_metadata, path)
