"""Resumable uploads for ``AsyncClient``: a large file goes up over tus 1.0 (``/v1/tus/``)
in chunks, each acknowledged once it is on the server's disk, and the upload's URL is kept
in a small resume file, so that the same upload run again after an interruption (Ctrl-C,
a dropped link, a crash) goes on from the server's offset instead of from zero.

Any tus server works: only the protocol's core, creation and checksum are used.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from uploads_api.client import attempts
from uploads_api.client.attempts import OnRetry
from uploads_api.client.calls import file_name, file_path, parse_record
from uploads_api.client.errors import ApiError, UploadsClientError
from uploads_api.client.models import FileRecord
from uploads_api.client.resume_state import ResumeState, default_state_file
from uploads_api.client.retry import RetryPolicy
from uploads_api.client.sources import RangeReader, UploadSource
from uploads_api.client.tus_chunks import TUS, Piece, send_chunk

TUS_ENDPOINT = "/v1/tus/"
DEFAULT_THRESHOLD = 64 * 1024 * 1024
DEFAULT_CHUNK = 8 * 1024 * 1024
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Sent:
    """A finished tus upload: its URL, and the file this server made of it (if it says)."""

    url: str
    file_id: str | None


def _metadata(name: str, sha256: str | None) -> str:
    items = {"filename": name, **({"sha256": sha256.lower()} if sha256 else {})}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in items.items())


SenderT = TypeVar("SenderT")


def required_sender(uploads: SenderT | None) -> SenderT:
    """The client's sender of resumable uploads, for ``upload(resumable=True)``."""
    if uploads is None:
        raise UploadsClientError(
            "this client sends nothing resumably: it was made with resumable=False"
            " or with a transport of its own"
        )
    return uploads


class AsyncResumableUploads:
    def __init__(
        self,
        api: httpx.AsyncClient,
        base_url: str,
        policy: RetryPolicy,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        chunk_size: int = DEFAULT_CHUNK,
        parallel: int = 1,
        state: ResumeState | None = None,
    ) -> None:
        self._api = api
        self._base = base_url
        self._policy = policy
        self.threshold = threshold
        self.chunk_size = chunk_size
        # Pieces sent at once, joined by the server (tus concatenation) into the file.
        self.parallel = max(1, parallel)
        self._state = state or ResumeState(default_state_file())
        self._offered: bool | None = None

    async def upload(
        self,
        upload: UploadSource,
        sha256: str | None,
        progress: Progress | None,
        on_retry: OnRetry | None,
        *,
        always: bool = False,
    ) -> FileRecord | None:
        """The file's record, or ``None`` when it is not for tus: not a file on disk, below
        the threshold, or a server without ``/v1/tus/``. ``always``: whatever its size, and
        ``UploadsClientError`` instead of ``None``."""
        path = upload.local_path
        ranges = None if path is None else await asyncio.to_thread(upload.open_ranges)
        if path is None or ranges is None:
            if always:
                raise UploadsClientError(f"{upload.name}: only a file on disk goes resumably")
            return None
        try:
            if ranges.size < self.threshold and not always:
                return None
            if not await self._offers_tus(on_retry):
                if always:
                    raise UploadsClientError("the server offers no resumable uploads (/v1/tus/)")
                return None
            key = await asyncio.to_thread(self.resume_key, path, ranges.size)
            sent = await self.transfer(
                ranges, file_name(upload.name), key, sha256, progress, on_retry
            )
            if sent.file_id is None:
                raise UploadsClientError(f"{sent.url}: all bytes sent, but no file was made")
            return await self._record(sent.file_id, on_retry)
        finally:
            ranges.close()

    async def send(
        self,
        upload: UploadSource,
        sha256: str | None,
        progress: Progress | None,
        on_retry: OnRetry | None,
    ) -> FileRecord:
        """Over tus whatever its size; ``UploadsClientError`` when it cannot go so."""
        record = await self.upload(upload, sha256, progress, on_retry, always=True)
        assert record is not None
        return record

    async def _offers_tus(self, on_retry: OnRetry | None) -> bool:
        if self._offered is None:

            async def ask() -> httpx.Response:
                return await self._api.options(TUS_ENDPOINT)

            answer = await attempts.retrying(self._policy, ask, on_retry=on_retry)
            self._offered = answer.status_code < 300 and "tus-version" in answer.headers
        return self._offered

    def resume_key(self, path: Path, size: int) -> str:
        """Where a file's upload is kept in the resume state: by server, file and size."""
        resolved = path.resolve()
        mtime = resolved.stat().st_mtime_ns
        return f"{self._base}|{resolved}|{size}|{mtime}|{self.parallel}"

    async def transfer(
        self,
        ranges: RangeReader,
        name: str,
        key: str,
        sha256: str | None,
        progress: Progress | None,
        on_retry: OnRetry | None,
    ) -> Sent:
        """The whole tus exchange with any tus server: resume or create, send every chunk,
        join the pieces. What this server adds (the ``File-Id`` of the file made) is read
        when it is there."""
        pieces = await self._resume(key, ranges.size, on_retry)
        if pieces is None:
            pieces = await self._create(ranges.size, name, sha256, on_retry)
            await asyncio.to_thread(self._state.put, key, json.dumps([p.url for p in pieces]))
        sent = [piece.offset for piece in pieces]

        def report() -> None:
            if progress is not None:
                progress(sum(sent))

        async def drive(index: int, piece: Piece) -> str | None:
            """Send the piece's chunks; the file's id when this completes the file."""
            while True:
                if piece.partial and sent[index] >= piece.length:
                    return None
                report()
                answer = await send_chunk(
                    self._api, self._policy, piece, ranges, sent[index], self.chunk_size, on_retry
                )
                sent[index] = int(answer.headers["upload-offset"])
                file_id = answer.headers.get("file-id")
                if file_id is not None or sent[index] >= piece.length:
                    return None if file_id is None else str(file_id)

        found = await asyncio.gather(*(drive(i, piece) for i, piece in enumerate(pieces)))
        report()
        if len(pieces) == 1:
            url, file_id = pieces[0].url, found[0]
        else:
            url, file_id = await self._join(pieces, name, sha256, on_retry)
        await asyncio.to_thread(self._state.forget, key)
        return Sent(url, file_id)

    def _split(self, size: int) -> list[tuple[int, int]]:
        """``(start, length)`` of each piece: one, or ``parallel`` about equal ones."""
        count = self.parallel if size >= self.parallel * self.chunk_size else 1
        bounds = [size * i // count for i in range(count + 1)]
        return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(count)]

    async def _resume(self, key: str, size: int, on_retry: OnRetry | None) -> list[Piece] | None:
        """The stored upload's pieces and their offsets, if the server still has them all."""
        stored = await asyncio.to_thread(self._state.get, key)
        if stored is None:
            return None
        try:
            urls = [str(url) for url in json.loads(stored)]
        except ValueError:
            urls = [stored]
        layout = self._split(size) if len(urls) > 1 else [(0, size)]
        if len(layout) != len(urls):
            return None
        pieces = []
        for url, (start, length) in zip(urls, layout, strict=True):

            async def ask(url: str = url) -> httpx.Response:
                return await attempts.send_once(self._api, "HEAD", url, headers=TUS)

            try:
                answer = await attempts.retrying(self._policy, ask, on_retry=on_retry)
            except ApiError as exc:
                if exc.status in (403, 404, 410):
                    await asyncio.to_thread(self._state.forget, key)
                    return None
                raise
            offset = int(answer.headers["upload-offset"])
            pieces.append(Piece(url, start, length, offset, partial=len(urls) > 1))
        return pieces

    async def _create(
        self, size: int, name: str, sha256: str | None, on_retry: OnRetry | None
    ) -> list[Piece]:
        layout = self._split(size)
        if len(layout) == 1:
            headers = {
                **TUS,
                "Upload-Length": str(size),
                "Upload-Metadata": _metadata(name, sha256),
            }
            return [Piece(await self._post(headers, on_retry), 0, size, 0, partial=False)]
        pieces = []
        for start, length in layout:
            headers = {**TUS, "Upload-Length": str(length), "Upload-Concat": "partial"}
            pieces.append(
                Piece(await self._post(headers, on_retry), start, length, 0, partial=True)
            )
        return pieces

    async def _join(
        self, pieces: list[Piece], name: str, sha256: str | None, on_retry: OnRetry | None
    ) -> tuple[str, str | None]:
        """The final upload of the finished pieces: the file, made at once."""
        headers = {
            **TUS,
            "Upload-Concat": "final;" + " ".join(httpx.URL(p.url).path for p in pieces),
            "Upload-Metadata": _metadata(name, sha256),
        }

        async def create() -> httpx.Response:
            return await attempts.send_once(self._api, "POST", TUS_ENDPOINT, headers=headers)

        answer = await attempts.retrying(self._policy, create, on_retry=on_retry)
        file_id = answer.headers.get("file-id")
        url = str(httpx.URL(self._base).join(answer.headers["location"]))
        return url, None if file_id is None else str(file_id)

    async def _post(self, headers: dict[str, str], on_retry: OnRetry | None) -> str:
        async def create() -> httpx.Response:
            return await attempts.send_once(self._api, "POST", TUS_ENDPOINT, headers=headers)

        answer = await attempts.retrying(self._policy, create, on_retry=on_retry)
        return str(httpx.URL(self._base).join(answer.headers["location"]))

    async def _record(self, file_id: str, on_retry: OnRetry | None) -> FileRecord:
        async def get() -> httpx.Response:
            return await attempts.send_once(self._api, "GET", file_path(file_id))

        return parse_record(await attempts.retrying(self._policy, get, on_retry=on_retry))
