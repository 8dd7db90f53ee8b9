"""``Client``: the same API as ``AsyncClient`` for code without an event loop.

Requests and answers are built and read by ``calls``; only the sending, sleeping and
threading differ from the async client.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from uploads_api.client import attempts, calls, many_sync
from uploads_api.client.batch_sync import Batches
from uploads_api.client.batching import (
    DEFAULT_BATCH,
    BatchLimits,
    BatchProgress,
    BatchRetry,
    Outcome,
)
from uploads_api.client.direct import storage_options
from uploads_api.client.direct_sync import DirectUploads
from uploads_api.client.errors import (
    NotFound,
    ProcessingTimeout,
    transport_error,
)
from uploads_api.client.models import FileRecord, HashCheck, TaskRecord
from uploads_api.client.results import UploadResult
from uploads_api.client.resumable import DEFAULT_CHUNK, DEFAULT_THRESHOLD, required_sender
from uploads_api.client.resumable_sync import ResumableUploads
from uploads_api.client.resume_state import ResumeState
from uploads_api.client.retry import Retrying, RetryPolicy
from uploads_api.client.sinks import Destination, DownloadSink
from uploads_api.client.sources import CHUNK_SIZE, Reader, Source, UploadSource

T = TypeVar("T")
R = TypeVar("R")  # an item of a listing
C = TypeVar("C")  # a listing's cursor
Progress = Callable[[int], None]
OnRetry = Callable[[Retrying], None]


class Client:
    """An uploads-api server. ``url`` and ``api_key`` default to ``UPLOADS_URL`` and
    ``UPLOADS_API_KEY``. Use as ``with Client() as client:``, or ``close()``. Safe to share
    between threads.

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
        transport: httpx.BaseTransport | None = None,
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
        self._http = httpx.Client(
            **calls.http_options(self.url, api_key, self._timeout, max_connections),
            transport=transport,
        )
        # Large files go straight to storage when the server offers it; ``direct=False``
        # sends everything through the API.
        self._direct: DirectUploads | None = None
        if direct:
            storage = httpx.Client(
                **storage_options(self._timeout, max_connections), transport=transport
            )
            self._direct = DirectUploads(self._http, storage, self.retry_policy)
        self._batches = Batches(self._http, self.retry_policy)
        # Files of ``resumable_threshold`` bytes or more go over tus in chunks, resumable
        # by a later run (see ``AsyncClient``); not over a test's own transport.
        self._resumable: ResumableUploads | None = None
        if resumable and transport is None:
            self._resumable = ResumableUploads(
                calls.http_options(self.url, api_key, self._timeout, 4),
                self.url,
                self.retry_policy,
                threshold=resumable_threshold,
                chunk_size=chunk_size,
                parallel=parallel,
                state=ResumeState(resume_state) if resume_state else None,
            )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        if self._direct is not None:
            self._direct.close()

    def full_url(self, path: str) -> str:
        """An absolute URL for a path the API returned (``links``, thumbnail ``url``)."""
        return self.url + path if path.startswith("/") else path

    # Uploads

    def upload(
        self,
        source: Source,
        filename: str | None = None,
        *,
        sha256: str | None = None,
        progress: Progress | None = None,
        on_retry: OnRetry | None = None,
        resumable: bool | None = None,
    ) -> FileRecord:
        """See ``AsyncClient.upload``. Parts of a direct upload are sent from threads, so
        ``progress`` and ``on_retry`` may be called from them (one call at a time)."""
        upload = UploadSource(source, filename)
        if resumable:
            return required_sender(self._resumable).send(upload, sha256, progress, on_retry)
        if self._direct is not None:
            record = self._direct.upload(upload, sha256, progress, on_retry)
            if record is not None:
                return record
        if self._resumable is not None and resumable is None:
            record = self._resumable.upload(upload, sha256, progress, on_retry)
            if record is not None:
                return record
        request = calls.upload_request(upload.name, sha256)

        def already_there() -> FileRecord | None:
            assert sha256 is not None
            return self._find(sha256)

        return self._retrying(
            lambda: self._upload_once(upload, request, sha256, progress),
            retryable=lambda: upload.retryable,
            on_retry=on_retry,
            recover=already_there if sha256 is not None else None,
        )

    def _find(self, sha256: str) -> FileRecord | None:
        """See ``AsyncClient._find``."""
        return next(self.list(sha256=sha256, limit=1), None)

    def _upload_once(
        self,
        upload: UploadSource,
        request: calls.UploadRequest,
        sha256: str | None,
        progress: Progress | None,
    ) -> FileRecord:
        reader = upload.open()
        try:
            if progress is not None:
                progress(0)
            response = self._http.request(
                request.method,
                request.path,
                content=calls.framed(request, _chunks(reader, progress)),
                headers=calls.upload_headers(request, reader.size, sha256),
            )
        finally:
            reader.close()
        record = calls.parse_upload(request, response)
        return calls.verify_upload(record, reader.sent, reader.hexdigest())

    def upload_batch(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        sha256s: Sequence[str | None] | None = None,
        progress: BatchProgress | None = None,
        on_retry: BatchRetry | None = None,
    ) -> builtins.list[Outcome]:
        """See ``AsyncClient.upload_batch``."""
        files = [Path(p) for p in paths]
        digests = list(sha256s) if sha256s is not None else [None] * len(files)
        return self._batches.upload(files, digests, progress, on_retry)

    def alone_from(self, on_retry: OnRetry | None = None) -> int | None:
        """See ``AsyncClient.alone_from``."""
        sizes = [] if self._resumable is None else [self._resumable.threshold]
        if self._direct is not None:
            offer = self._direct.offer(on_retry)
            sizes += [] if offer is None else [max(1, offer.min_size)]
        return min(sizes, default=None)

    def upload_many(
        self,
        paths: Iterable[str | Path],
        *,
        concurrency: int = 4,
        skip_existing: bool = False,
        batch: BatchLimits | None = DEFAULT_BATCH,
    ) -> builtins.list[UploadResult]:
        """Upload files from ``concurrency`` threads, small files packed into batches
        (``batch``, as for ``AsyncClient.upload_many``); one ``UploadResult`` per path, in
        order. Failures are reported in the results, not raised. With ``skip_existing``,
        files whose bytes the server (or an earlier file of the batch) has are skipped."""
        return many_sync.upload_many(
            self,
            [Path(p) for p in paths],
            concurrency=concurrency,
            skip_existing=skip_existing,
            batch=batch,
        )

    # Reading

    def get(self, file_id: str, wait: float | None = None) -> FileRecord:
        """One file. ``wait`` (at most 60 s) holds the answer until processing ends."""
        response = self._request(
            "GET",
            calls.file_path(file_id),
            params=calls.get_params(wait),
            timeout=calls.get_timeout(self._timeout, wait),
        )
        return calls.parse_record(response)

    def wait(self, file_id: str, timeout: float = 300.0) -> FileRecord:
        """The file once it is no longer ``processing``; ``ProcessingTimeout`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            record = self.get(file_id, wait=max(0.0, min(calls.MAX_SERVER_WAIT, remaining)))
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
    ) -> Iterator[FileRecord]:
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
    ) -> Iterator[TaskRecord]:
        """Task rows, newest first, across every page (at most ``limit`` of them)."""
        return self._paged(
            calls.TASKS,
            lambda size, cursor: calls.tasks_params(state, size, cursor),
            calls.parse_tasks_page,
            limit,
            page_size,
        )

    def _paged(
        self,
        path: str,
        params: Callable[[int, C | None], dict[str, Any]],
        parse: Callable[[httpx.Response], tuple[builtins.list[R], C | None]],
        limit: int | None,
        page_size: int,
    ) -> Iterator[R]:
        """See ``AsyncClient._paged``."""
        seen = 0
        cursor: C | None = None
        while limit is None or seen < limit:
            size = calls.page_size(limit, seen, page_size)
            items, cursor = parse(self._request("GET", path, params=params(size, cursor)))
            for item in items[: None if limit is None else limit - seen]:
                yield item
                seen += 1
            if cursor is None or not items:
                return

    def check(self, sha256s: Iterable[str]) -> HashCheck:
        """Which hashes the server has; sent in batches of at most 10,000."""
        return calls.parse_check(
            self._request("POST", f"{calls.FILES}/check", json={"sha256": batch})
            for batch in calls.check_batches(sha256s)
        )

    def download(self, file_id: str, dest: Destination) -> int:
        """See ``AsyncClient.download``."""
        response = self._retrying(
            lambda: self._send_once("GET", calls.file_path(file_id, "content"), stream=True)
        )
        sink: DownloadSink | None = None
        try:
            sink = DownloadSink(dest)
            for chunk in response.iter_bytes(CHUNK_SIZE):
                sink.write(chunk)
            calls.check_download(calls.etag_sha256(response), sink.hexdigest(), file_id)
            sink.commit()
            return sink.written
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        finally:
            if sink is not None:
                sink.abort()
            response.close()

    # Changing

    def delete(self, file_id: str) -> None:
        retried = False

        def note(_: Retrying) -> None:
            nonlocal retried
            retried = True

        try:
            self._request("DELETE", calls.file_path(file_id), on_retry=note)
        except NotFound:
            # An earlier try may have deleted it before its answer was lost.
            if not retried:
                raise

    def retry(self, file_id: str) -> FileRecord:
        """Queue the file's failed tasks again."""
        return calls.parse_record(self._request("POST", calls.file_path(file_id, "retry")))

    # Plumbing

    def _request(
        self, method: str, path: str, *, on_retry: OnRetry | None = None, **options: Any
    ) -> httpx.Response:
        return self._retrying(lambda: self._send_once(method, path, **options), on_retry=on_retry)

    def _send_once(
        self, method: str, path: str, *, stream: bool = False, **options: Any
    ) -> httpx.Response:
        """One try. A non-2xx answer is raised as ``ApiError``."""
        return attempts.send_once_sync(self._http, method, path, stream=stream, **options)

    def _retrying(
        self,
        attempt: Callable[[], T],
        *,
        retryable: Callable[[], bool] = lambda: True,
        on_retry: OnRetry | None = None,
        recover: Callable[[], T | None] | None = None,
    ) -> T:
        """See ``AsyncClient._retrying``."""
        return attempts.retrying_sync(
            self.retry_policy, attempt, retryable=retryable, on_retry=on_retry, recover=recover
        )


def _chunks(reader: Reader, progress: Progress | None) -> Iterator[bytes]:
    while not reader.finished:
        if chunk := reader.read():
            yield chunk
        if progress is not None:
            progress(reader.sent)
