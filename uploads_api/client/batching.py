"""Many small files in one request: which files travel together, the multipart body that
carries them, and what a refusal of one of them means. No I/O here, as in ``calls``: the
clients send what these functions describe.

A batch is one ``POST /v1/files`` with an ``Idempotency-Key``, fresh for each batch and the
same for its retries, so a retry after a lost answer gets that answer instead of storing
the files twice. When the server refuses the batch because of one file (it names the
part), that file is reported and the others go again, as a new request with a new key.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from uploads_api.client.calls import (
    FORM_CONTENT_TYPE,
    FORM_END,
    ensure_ok,
    file_name,
    form_file_head,
    verify_upload,
)
from uploads_api.client.errors import ApiError, IntegrityError
from uploads_api.client.models import FileRecord
from uploads_api.client.retry import Retrying

MiB = 1024 * 1024
DEFAULT_BATCH_FILES = 64
DEFAULT_BATCH_BYTES = 8 * MiB
IDEMPOTENCY_KEY = "Idempotency-Key"
# Refusals the server pins on one file part (problem members `part` and `filename`).
PART_REFUSALS = frozenset({"file-too-large", "unsupported-media-type", "checksum-mismatch"})
# Between a part's bytes and the next part's delimiter.
PART_END = b"\r\n"
# Files up to this size are read whole in the thread hop that opens a try's files: a batch
# of small files then costs the event loop one hop, not one per file.
READ_AHEAD = 256 * 1024

# What became of one file of a batch: its record, or why it was not stored.
Outcome = FileRecord | Exception
# Told the bytes of file ``index`` sent so far in the current try (0 when a try starts).
BatchProgress = Callable[[int, int], None]
# Told of each retry and which files (indexes into the batch) the retried request carries.
BatchRetry = Callable[[Retrying, Sequence[int]], None]


@dataclass(frozen=True)
class BatchLimits:
    """At most ``files`` files and ``bytes`` bytes per request; a larger file goes alone."""

    files: int = DEFAULT_BATCH_FILES
    bytes: int = DEFAULT_BATCH_BYTES

    def __post_init__(self) -> None:
        if self.files < 1 or self.bytes < 1:
            raise ValueError("a batch holds at least one file and one byte")


DEFAULT_BATCH = BatchLimits()


class PartFailed(Exception):
    """File ``index`` of a request could not be sent (unreadable, or changed while read);
    the request was abandoned. ``cause`` is what to report for that file."""

    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(str(cause))
        self.index = index
        self.cause = cause


def plan(
    sizes: Sequence[int], limits: BatchLimits, *, spread: int = 1, alone: Sequence[bool] = ()
) -> list[list[int]]:
    """Indexes of the files grouped into requests, in order. A file over ``limits.bytes``,
    or marked ``alone``, is a group of its own. ``spread``: no group holds more than its
    share of the files, so that ``spread`` requests can be in flight at once."""
    solo = [size > limits.bytes or (i < len(alone) and alone[i]) for i, size in enumerate(sizes)]
    together = len(sizes) - sum(solo)
    most = max(1, min(limits.files, math.ceil(together / max(1, spread))))
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, file_size in enumerate(sizes):
        if solo[index]:
            groups.append([index])
            continue
        if current and (len(current) >= most or size + file_size > limits.bytes):
            groups.append(current)
            current, size = [], 0
        current.append(index)
        size += file_size
    if current:
        groups.append(current)
    return groups


def sendable_name(name: str) -> bool:
    """Whether a name fits in a part's header; one with control characters goes alone,
    in a ``PUT`` path, where any byte can be quoted."""
    return not any(ord(c) < 32 or ord(c) == 127 for c in name)


def batchable(path: Path) -> bool:
    """Whether the file's name can go in a batch."""
    try:
        return sendable_name(file_name(path.name))
    except ValueError:
        return False


def batch_names(paths: Sequence[Path]) -> list[str]:
    """The name each file is sent under (see ``calls.file_name``); ``ValueError`` for one
    that cannot go in a batch."""
    names = [file_name(path.name) for path in paths]
    for path, name in zip(paths, names, strict=True):
        if not sendable_name(name):
            raise ValueError(f"{path}: a name with control characters cannot go in a batch")
    return names


def new_key() -> str:
    """A fresh Idempotency-Key: 144 random bits."""
    return secrets.token_urlsafe(18)


@dataclass(frozen=True)
class BatchRequest:
    """One try's framing: the body is each file's head followed by its bytes, then
    ``FORM_END``; and the headers."""

    heads: tuple[bytes, ...]
    headers: dict[str, str]


def batch_request(
    names: Sequence[str], sizes: Sequence[int], sha256s: Sequence[str | None], key: str
) -> BatchRequest:
    heads = tuple(
        (PART_END if i else b"") + form_file_head(name, digest)
        for i, (name, digest) in enumerate(zip(names, sha256s, strict=True))
    )
    length = sum(len(head) for head in heads) + sum(sizes) + len(FORM_END)
    headers = {
        "Content-Type": FORM_CONTENT_TYPE,
        "Content-Length": str(length),
        IDEMPOTENCY_KEY: key,
    }
    return BatchRequest(heads, headers)


def parse_batch(response: httpx.Response, sent: Sequence[tuple[int, str | None]]) -> list[Outcome]:
    """Each file's record, in order, once it describes the bytes sent (``sent`` holds the
    size and sha256 of each); a record that does not is an ``IntegrityError`` for its file."""
    files = ensure_ok(response).json()["files"]
    if len(files) != len(sent):
        raise IntegrityError(f"the server answered {len(files)} records for {len(sent)} files")
    outcomes: list[Outcome] = []
    for item, (size, sha256) in zip(files, sent, strict=True):
        try:
            outcomes.append(verify_upload(FileRecord.from_json(item), size, sha256))
        except IntegrityError as exc:
            outcomes.append(exc)
    return outcomes


class Relay:
    """Tells the caller's callbacks about the files of one request by their index in the
    whole batch, not in the request."""

    def __init__(
        self, indexes: list[int], progress: BatchProgress | None, on_retry: BatchRetry | None
    ) -> None:
        self.indexes = indexes
        self._progress = progress
        self._on_retry = on_retry

    def sent(self, position: int, count: int) -> None:
        if self._progress is not None:
            self._progress(self.indexes[position], count)

    def retried(self, notice: Retrying) -> None:
        if self._on_retry is not None:
            self._on_retry(notice, self.indexes)


class BatchState:
    """The files of a batch not decided yet, and the outcome of those that are. Each
    request sends the pending ones; a refusal that names a part decides that file alone."""

    def __init__(self, count: int) -> None:
        self.pending = list(range(count))
        self._outcomes: dict[int, Outcome] = {}

    def answered(self, outcomes: Sequence[Outcome]) -> None:
        """The request carrying the pending files was answered: each file's outcome."""
        self._outcomes.update(zip(self.pending, outcomes, strict=True))
        self.pending = []

    def refused(self, failure: Exception) -> bool:
        """Take a failed request's error: if it names one file, that file is decided and
        the rest stay pending (``True``); else the whole request failed (``False``)."""
        if isinstance(failure, PartFailed):
            position, cause = failure.index, failure.cause
        elif isinstance(failure, ApiError) and failure.code in PART_REFUSALS:
            part = failure.problem.get("part")
            if not isinstance(part, int) or not 0 <= part < len(self.pending):
                return False
            position, cause = part, failure
        else:
            return False
        self._outcomes[self.pending.pop(position)] = cause
        return True

    def outcomes(self) -> list[Outcome]:
        return [self._outcomes[index] for index in range(len(self._outcomes))]
