"""Uploading many files: a few at a time over one connection pool, optionally hashing
first to send only what the server lacks, optionally waiting for processing.

The uploader reports what happens as small frozen events to one callback, in the order
they happen; the command line draws its progress display from them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from uploads_api.client.calls import CHECK_BATCH
from uploads_api.client.errors import ProcessingTimeout, TransportError, UploadsClientError
from uploads_api.client.models import FileRecord, HashCheck
from uploads_api.client.results import Triage, UploadResult, unreadable, upload_failed, uploaded
from uploads_api.client.retry import Retrying
from uploads_api.client.sources import sha256_file

# Files are hashed and checked in groups this big, so uploads start before every file
# of a large batch has been read once.
HASH_GROUP_BYTES = 64 * 1024 * 1024
NOT_SENT = "not sent: the server could not be reached"


@dataclass(frozen=True)
class Planned:
    files: int
    bytes: int


@dataclass(frozen=True)
class Hashed:
    path: Path
    size: int


@dataclass(frozen=True)
class Started:
    path: Path
    size: int


@dataclass(frozen=True)
class Sent:
    """``sent`` bytes of ``path`` went out in the current try (0 when a try starts)."""

    path: Path
    sent: int


@dataclass(frozen=True)
class Retry:
    path: Path
    tries: int
    delay: float
    reason: str


@dataclass(frozen=True)
class Waiting:
    """Uploaded; now waiting for processing to end."""

    path: Path
    file_id: str


@dataclass(frozen=True)
class Done:
    result: UploadResult


@dataclass(frozen=True)
class Stopping:
    """No more files will be started: the server cannot be reached."""

    reason: str


Event = Planned | Hashed | Started | Sent | Retry | Waiting | Done | Stopping


class BatchClient(Protocol):
    """The calls ``BatchUploader`` makes on its client; ``AsyncClient`` has them all.
    Spelled out here so that this module needs nothing from the client that uses it."""

    async def upload(
        self,
        source: Path,
        *,
        sha256: str | None = None,
        progress: Callable[[int], None] | None = None,
        on_retry: Callable[[Retrying], None] | None = None,
    ) -> FileRecord:
        """Send the file and return its record; raises ``UploadsClientError`` or
        ``OSError`` once retries are spent."""
        ...

    async def check(self, sha256s: Iterable[str]) -> HashCheck:
        """Which of the hashes the server already has."""
        ...

    async def wait(self, file_id: str, timeout: float = 300.0) -> FileRecord:
        """The record once processing ended; ``ProcessingTimeout`` after ``timeout`` s."""
        ...


class BatchUploader:
    """Uploads paths with ``concurrency`` requests in flight.

    ``skip_existing``: hash the files in threads, ask the server which hashes it has
    (``POST /v1/files/check``) and send only the others, each once. ``wait``: after each
    upload, wait (up to ``wait_timeout`` s) until the file is processed. When a file cannot
    be sent because the server is unreachable even after retries, no new file is started:
    the rest are reported failed with ``NOT_SENT`` instead of each retrying in turn.

    ``keep_results=False`` keeps no results (``run`` returns an empty list), for callers
    that take them from ``Done`` events: a batch of a million files then stays small.
    """

    def __init__(
        self,
        client: BatchClient,
        *,
        concurrency: int = 4,
        skip_existing: bool = False,
        wait: bool = False,
        wait_timeout: float = 600.0,
        on_event: Callable[[Event], None] | None = None,
        hash_threads: int | None = None,
        keep_results: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.client = client
        self.concurrency = concurrency
        self.skip_existing = skip_existing
        self.wait = wait
        self.wait_timeout = wait_timeout
        self._emit = on_event or (lambda event: None)
        self._hash_threads = hash_threads or min(4, os.cpu_count() or 1)
        self._queue: asyncio.Queue[tuple[int, str | None] | None] = asyncio.Queue()
        self._wait_slots = asyncio.Semaphore(concurrency)
        self._keep = keep_results
        self._results: dict[int, UploadResult] = {}
        self._finished: bytearray = bytearray()
        self._stopped: TransportError | None = None
        self._fatal: UploadsClientError | None = None
        self._paths: list[Path] = []
        self._sizes: list[int] = []
        self._unreadable: list[tuple[int, UploadResult]] = []

    async def run(self, paths: Sequence[Path]) -> list[UploadResult]:
        """One result per path, in order. Cancelling stops every upload in flight."""
        self._queue = asyncio.Queue()
        self._results, self._unreadable = {}, []
        self._stopped = self._fatal = None
        self._paths = list(paths)
        self._finished = bytearray(len(self._paths))
        self._sizes = await asyncio.to_thread(self._stat_all)
        self._emit(Planned(len(self._paths), sum(self._sizes)))
        async with asyncio.TaskGroup() as group:
            group.create_task(self._produce())
            for _ in range(self.concurrency):
                group.create_task(self._work(group))
        if self._fatal is not None:
            raise self._fatal
        for index, path in enumerate(self._paths):
            if not self._finished[index]:
                assert self._stopped is not None
                error = TransportError(f"{NOT_SENT}: {self._stopped}")
                self._finish(index, UploadResult(path, "failed", self._sizes[index], error=error))
        return [self._results[index] for index in range(len(self._paths))] if self._keep else []

    def _stat_all(self) -> list[int]:
        sizes = []
        for index, path in enumerate(self._paths):
            try:
                sizes.append(path.stat().st_size)
            except OSError as exc:
                sizes.append(0)
                self._unreadable.append((index, unreadable(path, 0, exc)))
        return sizes

    def _finish(self, index: int, result: UploadResult) -> None:
        self._finished[index] = 1
        if self._keep:
            self._results[index] = result
        self._emit(Done(result))

    # Deciding what to send

    async def _produce(self) -> None:
        try:
            for index, result in self._unreadable:
                self._finish(index, result)
            todo = [i for i in range(len(self._paths)) if not self._finished[i]]
            if self.skip_existing:
                await self._produce_missing(todo)
            else:
                for index in todo:
                    self._queue.put_nowait((index, None))
        except UploadsClientError as exc:
            # The hash check failed even after retries: start nothing more, and raise it
            # once the uploads already in flight have ended.
            self._fatal = exc
        finally:
            for _ in range(self.concurrency):
                self._queue.put_nowait(None)

    async def _produce_missing(self, todo: list[int]) -> None:
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        pool = ThreadPoolExecutor(self._hash_threads, thread_name_prefix="sha256")
        triage = Triage()
        try:
            for group in self._hash_groups(todo):
                futures = [
                    loop.run_in_executor(pool, sha256_file, self._paths[i], stop) for i in group
                ]
                hashed: list[tuple[int, Path, int, str]] = []
                for index, future in zip(group, futures, strict=True):
                    path, size = self._paths[index], self._sizes[index]
                    try:
                        hashed.append((index, path, size, await future))
                    except OSError as exc:
                        self._finish(index, unreadable(path, size, exc))
                        continue
                    self._emit(Hashed(path, size))
                if self._stopped is not None:
                    return
                present = (await self.client.check(h[3] for h in hashed)).present
                send, decided = triage.sort(hashed, present)
                for index, result in decided:
                    self._finish(index, result)
                for item in send:
                    self._queue.put_nowait(item)
        finally:
            # Threads still hashing give up at their next chunk instead of delaying exit.
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _hash_groups(self, todo: list[int]) -> list[list[int]]:
        groups: list[list[int]] = [[]]
        size = 0
        for index in todo:
            if groups[-1] and (len(groups[-1]) >= CHECK_BATCH or size >= HASH_GROUP_BYTES):
                groups.append([])
                size = 0
            groups[-1].append(index)
            size += self._sizes[index]
        return [group for group in groups if group]

    # Sending

    async def _work(self, group: asyncio.TaskGroup) -> None:
        while (item := await self._queue.get()) is not None:
            if self._stopped is not None:
                continue  # drain: what is left is reported as not sent
            index, digest = item
            result = await self._upload(self._paths[index], self._sizes[index], digest)
            if self.wait and result.outcome == "uploaded" and result.record is not None:
                group.create_task(self._wait_for(index, result))
            else:
                self._finish(index, result)

    async def _upload(self, path: Path, size: int, digest: str | None) -> UploadResult:
        self._emit(Started(path, size))
        started = time.monotonic()
        tries = 1

        def retrying(notice: Retrying) -> None:
            nonlocal tries
            tries = notice.tries + 1
            self._emit(Retry(path, notice.tries, notice.delay, notice.reason))

        try:
            record = await self.client.upload(
                path,
                sha256=digest,
                progress=lambda sent: self._emit(Sent(path, sent)),
                on_retry=retrying,
            )
        except (UploadsClientError, OSError) as exc:
            if isinstance(exc, TransportError) and exc.unreachable and self._stopped is None:
                self._stopped = exc
                self._emit(Stopping(str(exc)))
            return upload_failed(path, size, digest, exc, started, tries)
        return uploaded(path, record, started, tries, digest)

    async def _wait_for(self, index: int, result: UploadResult) -> None:
        assert result.record is not None
        self._emit(Waiting(result.path, result.record.id))
        async with self._wait_slots:
            try:
                record = await self.client.wait(result.record.id, timeout=self.wait_timeout)
                result = replace(result, record=record, sha256=record.sha256 or result.sha256)
            except ProcessingTimeout as exc:
                result = replace(result, record=exc.record, error=exc, reason=str(exc))
            except UploadsClientError as exc:
                result = replace(result, error=exc, reason=f"waiting failed: {exc}")
        self._finish(index, result)
