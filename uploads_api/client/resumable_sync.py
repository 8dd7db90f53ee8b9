"""Resumable uploads for the blocking ``Client``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from uploads_api.client.attempts import OnRetry
from uploads_api.client.models import FileRecord
from uploads_api.client.resumable import AsyncResumableUploads, Progress
from uploads_api.client.retry import RetryPolicy
from uploads_api.client.sources import UploadSource


class ResumableUploads:
    """The same for the blocking ``Client``: each upload runs the async uploader on a loop
    of its own, over a connection of its own (a few per file, next to megabytes of
    chunks)."""

    def __init__(
        self, http_options: dict[str, Any], base_url: str, policy: RetryPolicy, **settings: Any
    ) -> None:
        self._options = http_options
        self._base = base_url
        self._policy = policy
        self._settings = settings

    @property
    def threshold(self) -> int:
        """Files of this size or more go resumably."""
        return int(self._settings["threshold"])

    def upload(
        self,
        upload: UploadSource,
        sha256: str | None,
        progress: Progress | None,
        on_retry: OnRetry | None,
        *,
        always: bool = False,
    ) -> FileRecord | None:
        path = upload.local_path
        small = path is not None and path.stat().st_size < self._settings["threshold"]
        if (path is None or small) and not always:
            return None

        async def run() -> FileRecord | None:
            async with httpx.AsyncClient(**self._options) as http:
                uploads = AsyncResumableUploads(http, self._base, self._policy, **self._settings)
                return await uploads.upload(upload, sha256, progress, on_retry, always=always)

        return asyncio.run(run())

    def send(
        self,
        upload: UploadSource,
        sha256: str | None,
        progress: Progress | None,
        on_retry: OnRetry | None,
    ) -> FileRecord:
        """See ``AsyncResumableUploads.send``."""
        record = self.upload(upload, sha256, progress, on_retry, always=True)
        assert record is not None
        return record
