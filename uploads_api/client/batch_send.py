"""Sending for ``BatchUploader``: one request's files, alone or together, each reported
as it goes (events) and as it ends (a result), whatever carried it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from uploads_api.client.batch_events import Event, Retry, Sent, Started, Stopping
from uploads_api.client.batching import BatchProgress, BatchRetry, Outcome
from uploads_api.client.errors import TransportError, UploadsClientError
from uploads_api.client.models import FileRecord, HashCheck
from uploads_api.client.results import UploadResult, upload_failed, uploaded
from uploads_api.client.retry import Retrying

Item = tuple[int, str | None]  # a file's index in the batch, and its sha256 when known


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

    async def upload_batch(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        sha256s: Sequence[str | None] | None = None,
        progress: BatchProgress | None = None,
        on_retry: BatchRetry | None = None,
    ) -> list[Outcome]:
        """Send the files in one request; each file's record or error. Raises
        ``UploadsClientError`` for what fails the whole request, once retries are spent."""
        ...

    async def alone_from(self, on_retry: Callable[[Retrying], None] | None = None) -> int | None:
        """The size from which ``upload`` sends a file its own way (direct, resumable)."""
        ...

    async def check(self, sha256s: Iterable[str]) -> HashCheck:
        """Which of the hashes the server already has."""
        ...

    async def wait(self, file_id: str, timeout: float = 300.0) -> FileRecord:
        """The record once processing ended; ``ProcessingTimeout`` after ``timeout`` s."""
        ...


class Sender:
    """Sends files of ``paths`` (of ``sizes`` bytes) through ``client``, telling ``emit``.
    ``stopped``: the error that showed the server cannot be reached, once one did."""

    def __init__(
        self,
        client: BatchClient,
        emit: Callable[[Event], None],
        paths: list[Path],
        sizes: list[int],
    ) -> None:
        self.client = client
        self._emit = emit
        self.paths = paths
        self.sizes = sizes
        self.stopped: TransportError | None = None

    async def send(self, items: list[Item]) -> list[tuple[int, UploadResult]]:
        """One request's files (a file alone goes as ``upload`` sends it); their results."""
        together = items
        if len(items) > 1:
            tries = [1] * len(items)

            def retrying(notice: Retrying) -> None:
                tries[:] = [notice.tries + 1] * len(items)
                self._retried(notice, [self.paths[index] for index, _ in items])

            try:
                threshold = await self.client.alone_from(retrying)
            except (UploadsClientError, OSError) as exc:
                return self._failed(items, exc, time.monotonic(), tries)
            if threshold is not None:
                # Files the client sends its own way (direct, resumable) go so, alone.
                together = [item for item in items if self.sizes[item[0]] < threshold]
        done = [
            (index, await self._upload(self.paths[index], self.sizes[index], digest))
            for index, digest in items
            if len(together) < 2 or (index, digest) not in together
        ]
        if len(together) >= 2:
            done += await self._upload_together(together)
        return done

    async def _upload_together(self, items: list[Item]) -> list[tuple[int, UploadResult]]:
        paths = [self.paths[index] for index, _ in items]
        begun = [False] * len(items)
        tries = [1] * len(items)
        started = time.monotonic()

        def progress(position: int, sent: int) -> None:
            if not begun[position]:
                begun[position] = True
                self._emit(Started(paths[position], self.sizes[items[position][0]]))
            self._emit(Sent(paths[position], sent))

        def retrying(notice: Retrying, carried: Sequence[int]) -> None:
            for position in carried:
                tries[position] = notice.tries + 1
            self._retried(notice, [paths[position] for position in carried])

        try:
            outcomes = await self.client.upload_batch(
                paths,
                sha256s=[digest for _, digest in items],
                progress=progress,
                on_retry=retrying,
            )
        except (UploadsClientError, OSError) as exc:
            return self._failed(items, exc, started, tries)
        results: list[tuple[int, UploadResult]] = []
        for position, ((index, digest), outcome) in enumerate(zip(items, outcomes, strict=True)):
            path, size = paths[position], self.sizes[index]
            if isinstance(outcome, FileRecord):
                results.append((index, uploaded(path, outcome, started, tries[position], digest)))
            else:
                failed = upload_failed(path, size, digest, outcome, started, tries[position])
                results.append((index, failed))
        return results

    def _retried(self, notice: Retrying, paths: list[Path]) -> None:
        """A request carrying ``paths`` is tried again: an event for each."""
        for position, path in enumerate(paths):
            retry = Retry(path, notice.tries, notice.delay, notice.reason, len(paths), position)
            self._emit(retry)

    def _failed(
        self,
        items: list[Item],
        exc: Exception,
        started: float,
        tries: list[int],
    ) -> list[tuple[int, UploadResult]]:
        """A request that failed as a whole: each of its files failed with its error."""
        self._note_unreachable(exc)
        return [
            (index, upload_failed(self.paths[index], self.sizes[index], digest, exc, started, n))
            for (index, digest), n in zip(items, tries, strict=True)
        ]

    def _note_unreachable(self, exc: Exception) -> None:
        """The first failure to reach the server at all: no request is started after it."""
        if isinstance(exc, TransportError) and exc.unreachable and self.stopped is None:
            self.stopped = exc
            self._emit(Stopping(str(exc)))

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
            self._note_unreachable(exc)
            return upload_failed(path, size, digest, exc, started, tries)
        return uploaded(path, record, started, tries, digest)
