"""The limits on the shape of one multipart request (parts, fields, headers), from the
settings. File size and quota are the ``UploadPolicy``'s."""

from __future__ import annotations

from dataclasses import dataclass

from uploads_api.config import Settings


@dataclass(frozen=True, kw_only=True)
class IngestLimits:
    max_files: int
    max_fields: int
    max_field_size: int
    max_header_size: int
    max_header_count: int = 16

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestLimits:
        return cls(
            max_files=settings.max_files_per_request,
            max_fields=settings.max_fields_per_request,
            max_field_size=settings.max_field_size,
            max_header_size=settings.max_part_header_size,
        )
