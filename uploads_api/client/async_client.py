"""``AsyncClient``: the API over one httpx connection pool, for asyncio code."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from uploads_api.client import attempts, calls
from uploads_api.client.batch import BatchUploader
from uploads_api.client.batch_async import AsyncBatches
from uploads_api.client.batching import (
    DEFAULT_BATCH,
    BatchLimits,
    BatchProgress,
    BatchRetry,
    Outcome,
)
from uploads_api.client.direct import storage_options
from uploads_api.client.direct_async import AsyncDirectUploads
from uploads_api.client.errors import (
    NotFound,
    ProcessingTimeout,
    transport_error,
)
from uploads_api.client.models import FileRecord, HashCheck, TaskRecord
from uploads_api.client.results import UploadResult
from uploads_api.client.resumable import (
    DEFAULT_CHUNK,
    DEFAULT_THRESHOLD,
    AsyncResumableUploads,
    required_sender,
)
from uploads_api.client.resume_state import ResumeState
from uploads_api.client.retry import Retrying, RetryPolicy
from uploads_api.client.sinks import Destination, DownloadSink
from uploads_api.client.sources import CHUNK_SIZE, Source, UploadSource, read_chunks

T = TypeVar("T")
R = TypeVar("R")  # an item of a listing
C = TypeVar("C")  # a listing's cursor
Progress = Callable[[int], None]
OnRetry = Callable[[Retrying], None]


class AsyncClient:
    """An uploads-api server. ``url`` and ``api_key`` default to ``UPLOADS_URL`` and
    ``UPLOADS_API_KEY``. Use as ``async with AsyncClient() as client:``, or ``aclose()``.

    Transient failures (no connection, 5xx, 408, 429) are retried per ``retry``; other
    errors raise ``ApiError`` subclasses carrying the server's problem document.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = calls.DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_connections: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
        direct: bool = True,
        resumable: bool = True,
        resumable_threshold: int = DEFAULT_THRESHOLD,
        chunk_size: int = DEFAULT_CHUNK,
        parallel: int = 1,
        resume_state: Path | None = None,
    ) -> None:
        self.url = calls.resolve_url(url)
        self.retry_policy = retry or RetryPolicy()
        self._timeout = httpx.Timeout(timeout)
        self._http = httpx.AsyncClient(
            **calls.http_options(self.url, api_key, self._timeout, max_connections),
            transport=transport,
        )
        # Large files go straight to storage when the server offers it; ``direct=False``
        # sends everything through the API.
        self._direct: AsyncDirectUploads | None = None
        if direct:
            storage = httpx.AsyncClient(
                **storage_options(self._timeout, max_connections), transport=transport
            )
            self._direct = AsyncDirectUploads(self._http, storage, self.retry_policy)
        self._batches = AsyncBatches(self._http, self.retry_policy)
        # Files of ``resumable_threshold`` bytes or more go over tus in chunks, resumable
        # by a later run (their upload URLs kept in ``resume_state``).
        self._resumable: AsyncResumableUploads | None = None
        if resumable:
            self._resumable = AsyncResumableUploads(
                self._http,
                self.url,
                self.retry_policy,
                threshold=resumable_threshold,
                chunk_size=chunk_size,
                parallel=parallel,
                state=ResumeState(resume_state) if resume_state else None,
            )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._direct is not None:
            await self._direct.aclose()

    def full_url(self, path: str) -> str:
        """An absolute URL for a path the API returned (``links``, thumbnail ``url``)."""
        return self.url + path if path.startswith("/") else path

    # Uploads

    async def upload(
        self,
        source: Source,
        filename: str | None = None,
        *,
        sha256: str | None = None,
        progress: Progress | None = None,
        on_retry: OnRetry | None = None,
        resumable: bool | None = None,
    ) -> FileRecord:
        """Upload a path, bytes or a binary file object with ``PUT /v1/files/{filename}`` in
        1 MiB chunks; ``filename`` defaults to the path's (or file's) name. ``progress(n)``
        hears the bytes sent in the current try (0 when a try starts). With ``sha256`` (known
        beforehand) the server checks the bytes, and a retry after a failure that may have
        stored the file first asks the server for it instead of sending it twice.

        A file of at least the server's ``min_size`` goes straight to its S3 bucket in parts
        when the server offers direct uploads (``direct=False`` on the client: never), its
        sha256 computed first when not given. ``resumable``: ``None`` sends files from the
        client's ``resumable_threshold`` up over tus, ``True`` every file, ``False`` none.
        """
        upload = UploadSource(source, filename)
        if resumable:
            return await required_sender(self._resumable).send(upload, sha256, progress, on_retry)
        if self._direct is not None:
            record = await self._direct.upload(upload, sha256, progress, on_retry)
            if record is not None:
                return record
        if self._resumable is not None and resumable is None:
            record = await self._resumable.upload(upload, sha256, progress, on_retry)
            if record is not None:
                return record
        request = calls.upload_request(upload.name, sha256)

        async def attempt() -> FileRecord:
            return await self._upload_once(upload, request, sha256, progress)

        async def already_there() -> FileRecord | None:
            assert sha256 is not None
            return await self._find(sha256)

        return await self._retrying(
            attempt,
            retryable=lambda: upload.retryable,
            on_retry=on_retry,
            recover=already_there if sha256 is not None else None,
        )

    async def _find(self, sha256: str) -> FileRecord | None:
        """A file with these bytes, if any: an upload whose answer was lost may be there."""
        async with contextlib.aclosing(self.list(sha256=sha256, limit=1)) as found:
            async for record in found:
                return record
        return None

    async def _upload_once(
        self,
        upload: UploadSource,
        request: calls.UploadRequest,
        sha256: str | None,
        progress: Progress | None,
    ) -> FileRecord:
        reader = await asyncio.to_thread(upload.open) if upload.blocking else upload.open()
        try:
            if progress is not None:
                progress(0)
            response = await self._http.request(
                request.method,
                request.path,
                content=calls.framed_async(request, read_chunks(reader, upload.blocking, progress)),
                headers=calls.upload_headers(request, reader.size, sha256),
            )
        finally:
            reader.close()
        record = calls.parse_upload(request, response)
        return calls.verify_upload(record, reader.sent, reader.hexdigest())

    async def upload_batch(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        sha256s: Sequence[str | None] | None = None,
        progress: BatchProgress | None = None,
        on_retry: BatchRetry | None = None,
    ) -> builtins.list[Outcome]:
        """Upload files in one ``POST /v1/files`` (never direct), under an
        ``Idempotency-Key`` its retries reuse, so nothing is stored twice. One outcome per
        path: its ``FileRecord``, or why that file was not stored (the server refused the
        request for it, it changed or could not be read): the others are then sent again
        without it. What fails the whole request is raised. ``progress(i, n)``: ``n`` bytes
        of file ``i`` sent in this try; ``on_retry(notice, indexes)``: a retry of those."""
        files = [Path(p) for p in paths]
        digests = list(sha256s) if sha256s is not None else [None] * len(files)
        return await self._batches.upload(files, digests, progress, on_retry)

    async def alone_from(self, on_retry: OnRetry | None = None) -> int | None:
        """The size from which ``upload`` sends a file its own way, never in a batch: direct
        to S3 (if the server offers it; asked once per client) or resumably; or ``None``."""
        sizes = [] if self._resumable is None else [self._resumable.threshold]
        if self._direct is not None:
            offer = await self._direct.offer(on_retry)
            sizes += [] if offer is None else [max(1, offer.min_size)]
        return min(sizes, default=None)

    async def upload_many(
        self,
        paths: Iterable[str | Path],
        *,
        concurrency: int = 4,
        skip_existing: bool = False,
        wait: bool = False,
        batch: BatchLimits | None = DEFAULT_BATCH,
    ) -> builtins.list[UploadResult]:
        """Upload files ``concurrency`` requests at a time, small ones ``batch``-ed (``None``:
        one per request); one ``UploadResult`` per path, in order. Failures are reported in
        the results, not raised. ``BatchUploader`` does the work and can report progress."""
        uploader = BatchUploader(
            self, concurrency=concurrency, skip_existing=skip_existing, wait=wait, batch=batch
        )
        return await uploader.run([Path(p) for p in paths])

    # Reading

    async def get(self, file_id: str, wait: float | None = None) -> FileRecord:
        """One file. ``wait`` (at most 60 s) holds the answer until processing ends."""
        response = await self._request(
            "GET",
            calls.file_path(file_id),
            params=calls.get_params(wait),
            timeout=calls.get_timeout(self._timeout, wait),
        )
        return calls.parse_record(response)

    async def wait(self, file_id: str, timeout: float = 300.0) -> FileRecord:
        """The file once it is no longer ``processing``; ``ProcessingTimeout`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            record = await self.get(file_id, wait=max(0.0, min(calls.MAX_SERVER_WAIT, remaining)))
            if not record.processing:
                return record
            if deadline - time.monotonic() <= 0:
                raise ProcessingTimeout(f"{file_id} still processing after {timeout:g} s", record)

    def list(
        self,
        status: str | None = None,
        *,
        sha256: str | None = None,
        limit: int | None = None,
        page_size: int = 100,
    ) -> AsyncGenerator[FileRecord, None]:
        """Files, newest first, across every page (at most ``limit`` of them)."""
        return self._paged(
            calls.FILES,
            lambda size, cursor: calls.list_params(status, sha256, size, cursor),
            calls.parse_files_page,
            limit,
            page_size,
        )

    def tasks(
        self, state: str | None = None, *, limit: int | None = None, page_size: int = 100
    ) -> AsyncGenerator[TaskRecord, None]:
        """Task rows, newest first, across every page (at most ``limit`` of them)."""
        return self._paged(
            calls.TASKS,
            lambda size, cursor: calls.tasks_params(state, size, cursor),
            calls.parse_tasks_page,
            limit,
            page_size,
        )

    async def _paged(
        self,
        path: str,
        params: Callable[[int, C | None], dict[str, Any]],
        parse: Callable[[httpx.Response], tuple[builtins.list[R], C | None]],
        limit: int | None,
        page_size: int,
    ) -> AsyncGenerator[R, None]:
        """Items of a listing, following ``next_cursor`` until ``limit`` or the last page."""
        seen = 0
        cursor: C | None = None
        while limit is None or seen < limit:
            size = calls.page_size(limit, seen, page_size)
            items, cursor = parse(await self._request("GET", path, params=params(size, cursor)))
            for item in items[: None if limit is None else limit - seen]:
                yield item
                seen += 1
            if cursor is None or not items:
                return

    async def check(self, sha256s: Iterable[str]) -> HashCheck:
        """Which hashes the server has; sent in batches of at most 10,000."""
        responses = [
            await self._request("POST", f"{calls.FILES}/check", json={"sha256": batch})
            for batch in calls.check_batches(sha256s)
        ]
        return calls.parse_check(responses)

    async def download(self, file_id: str, dest: Destination) -> int:
        """Stream a file's bytes to a path or a binary file object; returns the byte count.
        A path is written only once the bytes match the server's sha256."""

        async def attempt() -> httpx.Response:
            return await self._send_once("GET", calls.file_path(file_id, "content"), stream=True)

        response = await self._retrying(attempt)
        sink: DownloadSink | None = None
        try:
            sink = await asyncio.to_thread(DownloadSink, dest)
            async for chunk in response.aiter_bytes(CHUNK_SIZE):
                await asyncio.to_thread(sink.write, chunk)
            calls.check_download(calls.etag_sha256(response), sink.hexdigest(), file_id)
            await asyncio.to_thread(sink.commit)
            return sink.written
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        finally:
            if sink is not None:
                await asyncio.shield(asyncio.to_thread(sink.abort))
            await response.aclose()

    # Changing

    async def delete(self, file_id: str) -> None:
        retried = False

        def note(_: Retrying) -> None:
            nonlocal retried
            retried = True

        try:
            await self._request("DELETE", calls.file_path(file_id), on_retry=note)
        except NotFound:
            # An earlier try may have deleted it before its answer was lost.
            if not retried:
                raise

    async def retry(self, file_id: str) -> FileRecord:
        """Queue the file's failed tasks again."""
        return calls.parse_record(await self._request("POST", calls.file_path(file_id, "retry")))

    # Plumbing
    async def _request(
        self, method: str, path: str, *, on_retry: OnRetry | None = None, **options: Any
    ) -> httpx.Response:
        async def attempt() -> httpx.Response:
            return await self._send_once(method, path, **options)

        return await self._retrying(attempt, on_retry=on_retry)

    async def _send_once(
        self, method: str, path: str, *, stream: bool = False, **options: Any
    ) -> httpx.Response:
        """One try. A non-2xx answer is raised as ``ApiError``."""
        return await attempts.send_once(self._http, method, path, stream=stream, **options)

    async def _retrying(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        retryable: Callable[[], bool] = lambda: True,
        on_retry: OnRetry | None = None,
        recover: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """``attempt`` until it succeeds or the policy gives up; ``recover`` before a retry
        that might repeat work the server already did."""
        return await attempts.retrying(
            self.retry_policy, attempt, retryable=retryable, on_retry=on_retry, recover=recover
        )
