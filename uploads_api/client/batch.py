"""Uploading many files: small ones packed into batches (one request each), a few
requests at a time over one connection pool, optionally hashing first to send only what
the server lacks, optionally waiting for processing; reporting each file's progress as
events (``batch_events``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from uploads_api.client.batch_events import (
    Done,
    Event,
    Hashed,
    Planned,
    Retry,
    Sent,
    Started,
    Stopping,
    Waiting,
)
from uploads_api.client.batch_send import BatchClient, Sender
from uploads_api.client.batching import (
    DEFAULT_BATCH,
    BatchLimits,
    batchable,
    plan,
)
from uploads_api.client.calls import CHECK_BATCH
from uploads_api.client.errors import ProcessingTimeout, TransportError, UploadsClientError
from uploads_api.client.results import Triage, UploadResult, unreadable
from uploads_api.client.sources import HASH_JOB_BYTES, runs, sha256_files

# Files are hashed and checked in groups this big, so uploads start before every file
# of a large batch has been read once.
HASH_GROUP_BYTES = 64 * 1024 * 1024
NOT_SENT = "not sent: the server could not be reached"
# The uploader, and the events it reports (defined in batch_events).
__all__ = [
    "NOT_SENT",
    "BatchClient",
    "BatchUploader",
    "Done",
    "Event",
    "Hashed",
    "Planned",
    "Retry",
    "Sent",
    "Started",
    "Stopping",
    "Waiting",
]


class BatchUploader:
    """Uploads paths with ``concurrency`` requests in flight.

    ``batch``: small files go several to a request, at most ``batch.files`` files and
    ``batch.bytes`` bytes each (and no more than an even share of the files, so that every
    request slot has work); a larger file, one that goes direct to storage, and one whose
    name needs quoting go alone. ``None``: one file per request. Results and events are per
    file either way.

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
        batch: BatchLimits | None = DEFAULT_BATCH,
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
        self.batch = batch
        self._queue: asyncio.Queue[list[tuple[int, str | None]] | None] = asyncio.Queue()
        self._wait_slots = asyncio.Semaphore(concurrency)
        self._keep = keep_results
        self._results: dict[int, UploadResult] = {}
        self._finished: bytearray = bytearray()
        self._sender = Sender(client, self._emit, [], [])
        self._fatal: UploadsClientError | None = None
        self._paths: list[Path] = []
        self._sizes: list[int] = []
        self._unreadable: list[tuple[int, UploadResult]] = []

    async def run(self, paths: Sequence[Path]) -> list[UploadResult]:
        """One result per path, in order. Cancelling stops every upload in flight."""
        self._queue = asyncio.Queue()
        self._results, self._unreadable = {}, []
        self._fatal = None
        self._paths = list(paths)
        self._finished = bytearray(len(self._paths))
        self._sizes = await asyncio.to_thread(self._stat_all)
        self._sender = Sender(self.client, self._emit, self._paths, self._sizes)
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
                self._put([(index, None) for index in todo])
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
            sizes = self._sizes
            for group in runs(todo, sizes, files=CHECK_BATCH, size_cap=HASH_GROUP_BYTES):
                jobs = runs(group, sizes, files=len(group), size_cap=HASH_JOB_BYTES)
                futures = [
                    loop.run_in_executor(pool, sha256_files, [self._paths[i] for i in job], stop)
                    for job in jobs
                ]
                hashed: list[tuple[int, Path, int, str]] = []
                for job, future in zip(jobs, futures, strict=True):
                    for index, digest in zip(job, await future, strict=True):
                        path, size = self._paths[index], self._sizes[index]
                        if isinstance(digest, OSError):
                            self._finish(index, unreadable(path, size, digest))
                            continue
                        hashed.append((index, path, size, digest))
                        self._emit(Hashed(path, size))
                if self._stopped is not None:
                    return
                present = (await self.client.check(h[3] for h in hashed)).present
                send, decided = triage.sort(hashed, present)
                for index, result in decided:
                    self._finish(index, result)
                self._put(list(send))
        finally:
            # Threads still hashing give up at their next chunk instead of delaying exit.
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _put(self, items: list[tuple[int, str | None]]) -> None:
        """Queue the files to send, grouped into requests."""
        if self.batch is None:
            groups = [[i] for i in range(len(items))]
        else:
            sizes = [self._sizes[index] for index, _ in items]
            alone = [not batchable(self._paths[index]) for index, _ in items]
            groups = plan(sizes, self.batch, spread=self.concurrency, alone=alone)
        for group in groups:
            self._queue.put_nowait([items[i] for i in group])

    # Sending

    async def _work(self, group: asyncio.TaskGroup) -> None:
        while (items := await self._queue.get()) is not None:
            if self._stopped is not None:
                continue  # drain: what is left is reported as not sent
            for index, result in await self._sender.send(items):
                if self.wait and result.outcome == "uploaded" and result.record is not None:
                    group.create_task(self._wait_for(index, result))
                else:
                    self._finish(index, result)

    @property
    def _stopped(self) -> TransportError | None:
        return self._sender.stopped

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
