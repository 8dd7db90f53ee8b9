"""``Client.upload_many``: files from a few threads, small ones packed into batches as
``BatchUploader`` packs them for the async client, optionally only those the server lacks.
One result per file, whatever request carried it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from uploads_api.client.batching import BatchLimits, Outcome, batchable, plan
from uploads_api.client.errors import UploadsClientError
from uploads_api.client.models import FileRecord, HashCheck
from uploads_api.client.results import Triage, UploadResult, unreadable, upload_failed, uploaded
from uploads_api.client.retry import Retrying
from uploads_api.client.sources import HASH_JOB_BYTES, runs, sha256_files

Item = tuple[int, str | None]  # a file's index, and its sha256 when known


class ManyClient(Protocol):
    """What ``upload_many`` uses of ``Client``."""

    def upload(self, source: Path, *, sha256: str | None = None) -> FileRecord: ...

    def upload_batch(
        self, paths: Sequence[str | os.PathLike[str]], *, sha256s: Sequence[str | None]
    ) -> list[Outcome]: ...

    def alone_from(self, on_retry: Callable[[Retrying], None] | None = None) -> int | None: ...

    def check(self, sha256s: Iterable[str]) -> HashCheck: ...


def upload_many(
    client: ManyClient,
    files: list[Path],
    *,
    concurrency: int,
    skip_existing: bool,
    batch: BatchLimits | None,
) -> list[UploadResult]:
    results: dict[int, UploadResult] = {}
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="upload") as pool:
        sizes: list[int] = []
        for index, (path, size) in enumerate(zip(files, pool.map(_size, files), strict=True)):
            if isinstance(size, OSError):
                results[index] = unreadable(path, 0, size)
            sizes.append(size if isinstance(size, int) else 0)
        send: list[Item] = [(i, None) for i in range(len(files)) if i not in results]
        if skip_existing:
            send = _missing(client, files, sizes, send, results, pool)
        if batch is None:
            groups = [[item] for item in send]
        else:
            alone = [not batchable(files[index]) for index, _ in send]
            planned = plan([sizes[i] for i, _ in send], batch, spread=concurrency, alone=alone)
            groups = [[send[i] for i in group] for group in planned]
        for done in pool.map(lambda group: _send(client, files, sizes, group), groups):
            results.update(done)
    return [results[index] for index in range(len(files))]


def _size(path: Path) -> int | OSError:
    try:
        return path.stat().st_size
    except OSError as exc:
        return exc


def _missing(
    client: ManyClient,
    files: list[Path],
    sizes: list[int],
    todo: list[Item],
    results: dict[int, UploadResult],
    pool: ThreadPoolExecutor,
) -> list[Item]:
    indexes = [index for index, _ in todo]
    jobs = runs(indexes, sizes, files=len(indexes), size_cap=HASH_JOB_BYTES)
    hashed: list[tuple[int, Path, int, str]] = []
    hashes = pool.map(lambda job: sha256_files([files[i] for i in job]), jobs)
    for job, digests in zip(jobs, hashes, strict=True):
        for index, digest in zip(job, digests, strict=True):
            if isinstance(digest, OSError):
                results[index] = unreadable(files[index], sizes[index], digest)
            else:
                hashed.append((index, files[index], sizes[index], digest))
    present = client.check(item[3] for item in hashed).present
    send, decided = Triage().sort(hashed, present)
    results.update(decided)
    return [(index, digest) for index, digest in send]


def _send(
    client: ManyClient, files: list[Path], sizes: list[int], group: list[Item]
) -> list[tuple[int, UploadResult]]:
    """One request's files (a file alone goes as ``upload`` sends it); their results."""
    started = time.monotonic()
    together = group
    if len(group) > 1:
        try:
            threshold = client.alone_from()
        except (UploadsClientError, OSError) as exc:
            return [(i, upload_failed(files[i], sizes[i], d, exc, started)) for i, d in group]
        if threshold is not None:
            together = [item for item in group if sizes[item[0]] < threshold]
    if len(together) < 2:
        together = []
    done = [(i, _one(client, files[i], sizes[i], d)) for i, d in group if (i, d) not in together]
    if not together:
        return done
    paths = [files[index] for index, _ in together]
    digests = [digest for _, digest in together]
    try:
        outcomes = client.upload_batch(paths, sha256s=digests)
    except (UploadsClientError, OSError) as exc:
        return done + [(i, upload_failed(files[i], sizes[i], d, exc, started)) for i, d in together]
    for (index, digest), outcome in zip(together, outcomes, strict=True):
        path, size = files[index], sizes[index]
        if isinstance(outcome, FileRecord):
            done.append((index, uploaded(path, outcome, started, sha256=digest)))
        else:
            done.append((index, upload_failed(path, size, digest, outcome, started)))
    return done


def _one(client: ManyClient, path: Path, size: int, digest: str | None) -> UploadResult:
    started = time.monotonic()
    try:
        record = client.upload(path, sha256=digest)
    except (UploadsClientError, OSError) as exc:
        return upload_failed(path, size, digest, exc, started)
    return uploaded(path, record, started, sha256=digest)
