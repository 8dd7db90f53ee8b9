"""Metadata extraction: basic facts for every file, image and PDF details where they apply."""

from __future__ import annotations

import logging
from typing import Any

from uploads_api.db.models import Task
from uploads_api.media import images, pdf
from uploads_api.media.formats import decoder_format
from uploads_api.tasks.base import PermanentError
from uploads_api.tasks.file_task import FileTask
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
        details = None
        if record.size > 0:
            details = await self._details(
                record.id, record.storage_key, record.content_type, basic["kind"]
            )
        await self.files.merge_metadata(record.id, {**basic, **(details or {})})

    async def _details(
        self, file_id: str, key: str, content_type: str, kind: str
    ) -> dict[str, Any] | None:
        formats = self.settings.image_formats
        if kind == "image" and decoder_format(content_type, formats):
            async with self.workspace.local_copy(self.storage, key, file_id) as path:
                try:
                    image = await self.pool.run(images.read_image_metadata, str(path), formats)
                except images.ImageError as exc:
                    raise PermanentError(f"cannot read image metadata: {exc}") from exc
            return {"image": image}
        if kind == "pdf":
            async with self.workspace.local_copy(self.storage, key, file_id) as path:
                try:
                    document = await self.pool.run(pdf.read_pdf_metadata, str(path))
                except pdf.DocumentError as exc:
                    raise PermanentError(f"cannot read PDF metadata: {exc}") from exc
            return {"pdf": document}
        return None
