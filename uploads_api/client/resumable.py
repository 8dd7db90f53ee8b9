"""Resumable uploads for ``AsyncClient``: a large file goes up over tus 1.0 (``/v1/tus/``)
in chunks, each acknowledged once it is on the server's disk, and the upload's URL is kept
in a small resume file, so that the same upload run again after an interruption (Ctrl-C,
a dropped link, a crash) goes on from the server's offset instead of from zero.

Any tus server works: only the protocol's core, creation and checksum are used.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx

from uploads_api.client import attempts
from uploads_api.client.attempts import OnRetry
from uploads_api.client.calls import file_name, file_path, parse_record
from uploads_api.client.errors import ApiError, UploadsClientError, transport_error
from uploads_api.client.models import FileRecord
from uploads_api.client.retry import Retrying, RetryPolicy, describe
from uploads_api.client.sources import RangeReader, UploadSource

TUS_ENDPOINT = "/v1/tus/"
TUS = {"Tus-Resumable": "1.0.0"}
DEFAULT_THRESHOLD = 64 * 1024 * 1024
DEFAULT_CHUNK = 8 * 1024 * 1024
# A chunk refused because the upload stands elsewhere or is being written: asked again
# this often, this many times (a writer that vanished loses its hold within ~10 s).
CONFLICT_PAUSE = 1.0
MAX_CONFLICTS = 30
Progress = Callable[[int], None]


def default_state_file() -> Path:
    """Where upload URLs are kept between runs: the user's cache directory."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "uploads-api" / "resumable.json"


class ResumeState:
    """Upload URLs by file (its absolute path, size and modification time) and server: a
    changed file starts afresh. Written whole, atomically; the last writer wins."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self, entries: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(temporary, self.path)

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def put(self, key: str, url: str) -> None:
        self._save({**self._load(), key: url})

    def forget(self, key: str) -> None:
        entries = self._load()
        if entries.pop(key, None) is not None:
            self._save(entries)


class AsyncResumableUploads:
    def __init__(
        self,
        api: httpx.AsyncClient,
        base_url: str,
        policy: RetryPolicy,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        chunk_size: int = DEFAULT_CHUNK,
        state: ResumeState | None = None,
    ) -> None:
        self._api = api
        self._base = base_url
        self._policy = policy
        self.threshold = threshold
        self.chunk_size = chunk_size
        self._state = state or ResumeState(default_state_file())
        self._offered: bool | None = None

    async def upload(
        self,
        upload: UploadSource,
        sha256: str | None,
        progress: Progress | None,
        on_retry: OnRetry | None,
    ) -> FileRecord | None:
        """The file's record, or ``None`` when it is not for tus: not a file on disk, below
        the threshold, or a server without ``/v1/tus/``."""
        path = upload.local_path
        if path is None:
            return None
        ranges = await asyncio.to_thread(upload.open_ranges)
        if ranges is None:
            return None
        try:
            if ranges.size < self.threshold or not await self._offers_tus(on_retry):
                return None
            key = await asyncio.to_thread(self._key_of, path, ranges.size)
            return await self._send(ranges, file_name(upload.name), key, sha256, progress, on_retry)
        finally:
            ranges.close()

    async def _offers_tus(self, on_retry: OnRetry | None) -> bool:
        if self._offered is None:

            async def ask() -> httpx.Response:
                return await self._api.options(TUS_ENDPOINT)

            answer = await attempts.retrying(self._policy, ask, on_retry=on_retry)
            self._offered = answer.status_code < 300 and "tus-version" in answer.headers
        return self._offered

    def _key_of(self, path: Path, size: int) -> str:
        resolved = path.resolve()
        return f"{self._base}|{resolved}|{size}|{resolved.stat().st_mtime_ns}"

    async def _send(
        self,
        ranges: RangeReader,
        name: str,
        key: str,
        sha256: str | None,
        progress: Progress | None,
        on_retry: OnRetry | None,
    ) -> FileRecord:
        url, offset = await self._resume(key, on_retry)
        if url is None:
            url = await self._create(ranges.size, name, sha256, on_retry)
            offset = 0
            await asyncio.to_thread(self._state.put, key, url)
        while True:
            if progress is not None:
                progress(offset)
            answer = await self._patch(url, ranges, offset, on_retry)
            offset = int(answer.headers["upload-offset"])
            file_id = answer.headers.get("file-id")
            if file_id is not None:
                if progress is not None:
                    progress(offset)
                await asyncio.to_thread(self._state.forget, key)
                return await self._record(file_id, on_retry)
            if offset >= ranges.size:
                raise UploadsClientError(f"{url}: all bytes sent, but the server made no file")

    async def _resume(self, key: str, on_retry: OnRetry | None) -> tuple[str | None, int]:
        """A stored upload's URL and offset, if the server still has it; a finished one is
        answered by its file."""
        url = await asyncio.to_thread(self._state.get, key)
        if url is None:
            return None, 0

        async def ask() -> httpx.Response:
            return await attempts.send_once(self._api, "HEAD", url, headers=TUS)

        try:
            answer = await attempts.retrying(self._policy, ask, on_retry=on_retry)
        except ApiError as exc:
            if exc.status in (403, 404, 410):
                await asyncio.to_thread(self._state.forget, key)
                return None, 0
            raise
        return url, int(answer.headers["upload-offset"])

    async def _create(
        self, size: int, name: str, sha256: str | None, on_retry: OnRetry | None
    ) -> str:
        items = {"filename": name, **({"sha256": sha256.lower()} if sha256 else {})}
        metadata = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in items.items()
        )
        headers = {**TUS, "Upload-Length": str(size), "Upload-Metadata": metadata}

        async def create() -> httpx.Response:
            return await attempts.send_once(self._api, "POST", TUS_ENDPOINT, headers=headers)

        answer = await attempts.retrying(self._policy, create, on_retry=on_retry)
        return str(httpx.URL(self._base).join(answer.headers["location"]))

    async def _patch(
        self, url: str, ranges: RangeReader, offset: int, on_retry: OnRetry | None
    ) -> httpx.Response:
        """One chunk from ``offset``, with its checksum; after a failure the next try asks
        the server where the upload stands, and sends from there."""
        position = offset

        async def attempt() -> httpx.Response:
            length = min(self.chunk_size, ranges.size - position)
            chunk = await asyncio.to_thread(ranges.read_at, position, length)
            digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
            headers = {
                **TUS,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(position),
                "Upload-Checksum": f"sha256 {digest}",
            }
            return await attempts.send_once(self._api, "PATCH", url, content=chunk, headers=headers)

        async def where() -> httpx.Response | None:
            nonlocal position
            with contextlib.suppress(httpx.TransportError, ApiError):
                answer = await attempts.send_once(self._api, "HEAD", url, headers=TUS)
                position = int(answer.headers["upload-offset"])
            return None

        state = self._policy.start()
        conflicts = 0
        while True:
            try:
                return await attempt()
            except (httpx.TransportError, ApiError) as exc:
                # 409: the server stands elsewhere (an earlier try got through after all);
                # 423: an earlier try is still being written. Both: ask, and go on.
                conflict = isinstance(exc, ApiError) and exc.status in (409, 423)
                conflicts += conflict
                pause = CONFLICT_PAUSE if conflict else state.pause_for(exc)
                if pause is None or conflicts > MAX_CONFLICTS:
                    if isinstance(exc, ApiError):
                        raise
                    raise transport_error(exc) from exc
                if on_retry is not None:
                    on_retry(Retrying(state.failed_tries, pause, describe(exc)))
                await asyncio.sleep(pause)
                await where()

    async def _record(self, file_id: str, on_retry: OnRetry | None) -> FileRecord:
        async def get() -> httpx.Response:
            return await attempts.send_once(self._api, "GET", file_path(file_id))

        return parse_record(await attempts.retrying(self._policy, get, on_retry=on_retry))
