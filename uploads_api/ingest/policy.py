"""``UploadPolicy``: what one request may store — sizes, types and what is left of a quota."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from uploads_api.db.usage import Quota
from uploads_api.errors import PayloadTooLarge, UnsupportedMediaType


@dataclass(kw_only=True)
class UploadPolicy:
    max_file_size: int
    allowed_types: tuple[str, ...] = ()
    strip_metadata: str = "none"  # UPLOADS_STRIP_METADATA: none, location or all
    quota: Quota | None = None
    used_bytes: int = 0
    used_files: int = 0
    _bytes: int = field(default=0, init=False)
    _files: int = field(default=0, init=False)

    def check_type(self, content_type: str, filename: str) -> None:
        """Refuse a sniffed type outside ``UPLOADS_ALLOWED_TYPES`` (patterns like image/*)."""
        if self.allowed_types and not any(
            fnmatch.fnmatchcase(content_type, pattern) for pattern in self.allowed_types
        ):
            raise UnsupportedMediaType(
                f"{filename!r} is {content_type}, which this server does not accept",
                content_type=content_type,
            )

    def bytes_left(self) -> int | None:
        """Bytes the quota still allows, ``None`` with no byte quota."""
        if self.quota is None or self.quota.max_bytes is None:
            return None
        return max(0, self.quota.max_bytes - self.used_bytes - self._bytes)

    def take_file(self) -> None:
        self._files += 1
        if self.quota is not None:
            self.quota.check(self.used_bytes + self._bytes, self.used_files + self._files)

    def take_bytes(self, count: int, file_size: int, filename: str) -> None:
        """Account for ``count`` more bytes of a file now ``file_size`` long."""
        if file_size > self.max_file_size:
            raise PayloadTooLarge(
                f"{filename!r} is larger than the limit of {self.max_file_size} bytes",
                limit=self.max_file_size,
            )
        self._bytes += count
        if self.quota is not None and self.quota.max_bytes is not None:
            self.quota.check(self.used_bytes + self._bytes, self.used_files + self._files)
