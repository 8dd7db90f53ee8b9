"""Direct uploads for ``AsyncClient``: asks once what the server offers, then sends each
large file's parts straight to storage, a few at once, and completes or aborts it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

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

T = TypeVar("T")
Progress = Callable[[int], None]


class AsyncDirectUploads:
    """``api`` is the client's connection to the API; ``storage`` a separate one, with no
    key and no base URL, for the presigned part URLs."""

    def __init__(
        self, api: httpx.AsyncClient, storage: httpx.AsyncClient, policy: RetryPolicy
    ) -> None:
        self._api = api
        self._storage = storage
        self._policy = policy
        self._offer: DirectOffer | None = None
        self._asked = False
        self._asking = asyncio.Lock()

    async def aclose(self) -> None:
        await self._storage.aclose()

    async def upload(
        self,
        upload: UploadSource,
        sha256: str | None,
        progress: Progress | None,
        on_retry: OnRetry | None,
    ) -> FileRecord | None:
        """The file's record, or ``None`` when it goes through the API instead: a stream,
        a file below the server's ``min_size``, or a server that offers no direct uploads."""
        if upload.blocking:
            ranges = await asyncio.to_thread(upload.open_ranges)
        else:
            ranges = upload.open_ranges()
        if ranges is None:
            return None
        try:
            offer = await self.offer(on_retry)
            if offer is None or not offer.takes(ranges.size):
                return None
            if sha256 is None:
                # Sent with the plan, the server checks the stored bytes against it.
                sha256 = await _blocking(ranges, ranges.sha256)
            return await self._send(
                ranges, file_name(upload.name), sha256.lower(), progress, on_retry
            )
        finally:
            ranges.close()

    async def offer(self, on_retry: OnRetry | None = None) -> DirectOffer | None:
        """What ``GET /v1/capabilities`` says of direct uploads, asked once per client."""
        async with self._asking:
            if not self._asked:
                self._offer = await self._ask(on_retry)
                self._asked = True
        return self._offer

    async def _ask(self, on_retry: OnRetry | None) -> DirectOffer | None:
        async def attempt() -> httpx.Response:
            return await attempts.send_once(self._api, "GET", CAPABILITIES)

        try:
            response = await attempts.retrying(self._policy, attempt, on_retry=on_retry)
        except ApiError as exc:
            if exc.status in NOT_OFFERED:
                return None
            raise
        return parse_capabilities(response)

    async def _send(
        self,
        ranges: RangeReader,
        name: str,
        sha256: str,
        progress: Progress | None,
        on_retry: OnRetry | None,
    ) -> FileRecord | None:
        async def create() -> httpx.Response:
            body = create_body(name, ranges.size, sha256)
            return await attempts.send_once(self._api, "POST", DIRECT_UPLOADS, json=body)

        try:
            plan = parse_plan(
                await attempts.retrying(self._policy, create, on_retry=on_retry), ranges.size
            )
        except NotFound as exc:
            if exc.code != UNAVAILABLE:
                raise
            self._offer = None  # turned off since we asked: this file and the next go via the API
            return None
        try:
            etags = await self._send_parts(plan, ranges, PartsProgress(progress), on_retry)
            await _blocking(ranges, ranges.check_unchanged)
            record = await self._complete(plan, etags, on_retry)
        except BaseException:
            # Shielded: a cancelled upload still tells the server to drop its parts.
            await asyncio.shield(self._abort(plan.id))
            raise
        return verify_direct(record, ranges.size, sha256)

    async def _send_parts(
        self,
        plan: DirectPlan,
        ranges: RangeReader,
        progress: PartsProgress,
        on_retry: OnRetry | None,
    ) -> dict[int, str]:
        etags: dict[int, str] = {}
        todo = iter(plan.parts)  # shared by the senders: each part is taken once

        async def sender() -> None:
            for part in todo:
                etags[part.number] = await self._put(part, ranges, progress, on_retry)

        failure: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(PARTS_AT_ONCE, len(plan.parts))):
                    group.create_task(sender())
        except BaseExceptionGroup as failed:
            # The first failure cancelled the other senders; raised as itself, as a
            # single upload's error would be.
            failure = failed.exceptions[0]
        if failure is not None:
            raise failure
        return etags

    async def _put(
        self, part: Part, ranges: RangeReader, progress: PartsProgress, on_retry: OnRetry | None
    ) -> str:
        async def attempt() -> str:
            progress.update(part.number, 0)
            response = await attempts.send_once(
                self._storage,
                "PUT",
                part.url,
                content=_part_body(part, ranges, progress),
                # Storage wants the length up front (no chunked bodies on presigned PUTs).
                headers={"Content-Length": str(part.size)},
            )
            return etag_of(response, part)

        return await attempts.retrying(self._policy, attempt, on_retry=on_retry)

    async def _complete(
        self,
        plan: DirectPlan,
        etags: dict[int, str],
        on_retry: OnRetry | None,
    ) -> FileRecord:
        tries = 0

        async def attempt() -> FileRecord:
            nonlocal tries
            tries += 1
            try:
                response = await attempts.send_once(
                    self._api, "POST", upload_path(plan.id, "complete"), json=complete_body(etags)
                )
            except NotFound:
                # An earlier try may have completed it before its answer was lost.
                if tries > 1 and (found := await self._stored(plan.id)) is not None:
                    return found
                raise
            return parse_record(response)

        async def recover() -> FileRecord | None:
            return await self._stored(plan.id)

        return await attempts.retrying(self._policy, attempt, on_retry=on_retry, recover=recover)

    async def _stored(self, file_id: str) -> FileRecord | None:
        """The file a completed upload became (it has the upload's id), if it exists."""
        try:
            return parse_record(await attempts.send_once(self._api, "GET", file_path(file_id)))
        except (httpx.HTTPError, UploadsClientError):
            return None  # not there, or not known now: completing again will tell

    async def _abort(self, upload_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError, UploadsClientError):
            await attempts.send_once(
                self._api, "DELETE", upload_path(upload_id), timeout=ABORT_TIMEOUT
            )


async def _part_body(
    part: Part, ranges: RangeReader, progress: PartsProgress
) -> AsyncIterator[bytes]:
    """The part read a chunk at a time as it is sent. ``progress`` hears of a chunk once
    httpx asks for the next, that is once it went out."""
    sent = 0
    for offset, length in part.chunks():
        yield await _blocking(ranges, functools.partial(ranges.read_at, offset, length))
        sent += length
        progress.update(part.number, sent)


async def _blocking(ranges: RangeReader, work: Callable[[], T]) -> T:
    """``work`` in a thread when reading ``ranges`` blocks (a file), else here."""
    return await asyncio.to_thread(work) if ranges.blocking else work()
