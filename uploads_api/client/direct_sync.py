"""Direct uploads for ``Client``: as ``direct_async``, with the parts sent from threads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import httpx

from uploads_api.client import attempts
from uploads_api.client.attempts import OnRetry
from uploads_api.client.calls import file_name, file_path, parse_record
from uploads_api.client.direct import (
    ABORT_TIMEOUT,
    CAPABILITIES,
    DIRECT_UPLOADS,
    NOT_OFFERED,
    PARTS_AT_ONCE,
    UNAVAILABLE,
    DirectOffer,
    DirectPlan,
    Part,
    PartsProgress,
    complete_body,
    create_body,
    etag_of,
    parse_capabilities,
    parse_plan,
    upload_path,
    verify_direct,
)
from uploads_api.client.errors import ApiError, NotFound, UploadsClientError
from uploads_api.client.models import FileRecord
from uploads_api.client.retry import RetryPolicy
from uploads_api.client.sources import RangeReader, UploadSource

Progress = Callable[[int], None]


class PartsStopped(Exception):
    """Another part failed (or the caller was interrupted): this one stops sending."""


class DirectUploads:
    """See ``AsyncDirectUploads``. ``progress`` and ``on_retry`` are called from the
    threads that send the parts, one call at a time."""

    def __init__(self, api: httpx.Client, storage: httpx.Client, policy: RetryPolicy) -> None:
        self._api = api
        self._storage = storage
        self._policy = policy
        self._offer: DirectOffer | None = None
        self._asked = False
        self._asking = threading.Lock()

    def close(self) -> None:
        self._storage.close()

    def upload(
        self,
        upload: UploadSource,
        sha256: str | None,
        progress: Progress | None,
        on_retry: OnRetry | None,
    ) -> FileRecord | None:
        """See ``AsyncDirectUploads.upload``."""
        ranges = upload.open_ranges()
        if ranges is None:
            return None
        try:
            offer = self.offer(on_retry)
            if offer is None or not offer.takes(ranges.size):
                return None
            if sha256 is None:
                sha256 = ranges.sha256()  # the server checks the stored bytes against it
            name = file_name(upload.name)
            return self._send(ranges, name, sha256.lower(), progress, on_retry)
        finally:
            ranges.close()

    def offer(self, on_retry: OnRetry | None = None) -> DirectOffer | None:
        """What ``GET /v1/capabilities`` says of direct uploads, asked once per client."""
        with self._asking:
            if not self._asked:
                self._offer = self._ask(on_retry)
                self._asked = True
        return self._offer

    def _ask(self, on_retry: OnRetry | None) -> DirectOffer | None:
        try:
            response = attempts.retrying_sync(
                self._policy,
                lambda: attempts.send_once_sync(self._api, "GET", CAPABILITIES),
                on_retry=on_retry,
            )
        except ApiError as exc:
            if exc.status in NOT_OFFERED:
                return None
            raise
        return parse_capabilities(response)

    def _send(
        self,
        ranges: RangeReader,
        name: str,
        sha256: str,
        progress: Progress | None,
        on_retry: OnRetry | None,
    ) -> FileRecord | None:
        body = create_body(name, ranges.size, sha256)
        try:
            created = attempts.retrying_sync(
                self._policy,
                lambda: attempts.send_once_sync(self._api, "POST", DIRECT_UPLOADS, json=body),
                on_retry=on_retry,
            )
        except NotFound as exc:
            if exc.code != UNAVAILABLE:
                raise
            self._offer = None  # turned off since we asked: this file and the next go via the API
            return None
        plan = parse_plan(created, ranges.size)
        try:
            etags = self._send_parts(plan, ranges, PartsProgress(progress), on_retry)
            ranges.check_unchanged()
            record = self._complete(plan, etags, on_retry)
        except BaseException:
            self._abort(plan.id)
            raise
        return verify_direct(record, ranges.size, sha256)

    def _send_parts(
        self,
        plan: DirectPlan,
        ranges: RangeReader,
        progress: PartsProgress,
        on_retry: OnRetry | None,
    ) -> dict[int, str]:
        stop = threading.Event()
        threads = min(PARTS_AT_ONCE, len(plan.parts))
        with ThreadPoolExecutor(threads, thread_name_prefix="upload-part") as pool:
            futures = [
                pool.submit(self._put, part, ranges, progress, on_retry, stop)
                for part in plan.parts
            ]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # the first failure, raised here
            except BaseException:
                # The parts in flight stop at their next chunk; those not started never start.
                stop.set()
                for future in futures:
                    future.cancel()
                raise
        return {part.number: f.result() for part, f in zip(plan.parts, futures, strict=True)}

    def _put(
        self,
        part: Part,
        ranges: RangeReader,
        progress: PartsProgress,
        on_retry: OnRetry | None,
        stop: threading.Event,
    ) -> str:
        def attempt() -> str:
            progress.update(part.number, 0)
            response = attempts.send_once_sync(
                self._storage,
                "PUT",
                part.url,
                content=_part_body(part, ranges, progress, stop),
                # Storage wants the length up front (no chunked bodies on presigned PUTs).
                headers={"Content-Length": str(part.size)},
            )
            return etag_of(response, part)

        return attempts.retrying_sync(self._policy, attempt, on_retry=on_retry)

    def _complete(
        self,
        plan: DirectPlan,
        etags: dict[int, str],
        on_retry: OnRetry | None,
    ) -> FileRecord:
        tries = 0

        def attempt() -> FileRecord:
            nonlocal tries
            tries += 1
            try:
                response = attempts.send_once_sync(
                    self._api, "POST", upload_path(plan.id, "complete"), json=complete_body(etags)
                )
            except NotFound:
                # An earlier try may have completed it before its answer was lost.
                if tries > 1 and (found := self._stored(plan.id)) is not None:
                    return found
                raise
            return parse_record(response)

        return attempts.retrying_sync(
            self._policy, attempt, on_retry=on_retry, recover=lambda: self._stored(plan.id)
        )

    def _stored(self, file_id: str) -> FileRecord | None:
        """See ``AsyncDirectUploads._stored``."""
        try:
            return parse_record(attempts.send_once_sync(self._api, "GET", file_path(file_id)))
        except (httpx.HTTPError, UploadsClientError):
            return None

    def _abort(self, upload_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError, UploadsClientError):
            attempts.send_once_sync(
                self._api, "DELETE", upload_path(upload_id), timeout=ABORT_TIMEOUT
            )


def _part_body(
    part: Part, ranges: RangeReader, progress: PartsProgress, stop: threading.Event
) -> Iterator[bytes]:
    sent = 0
    for offset, length in part.chunks():
        if stop.is_set():
            raise PartsStopped(f"part {part.number} stopped: another part failed")
        yield ranges.read_at(offset, length)
        sent += length
        progress.update(part.number, sent)
