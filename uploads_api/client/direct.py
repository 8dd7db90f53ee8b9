"""Direct uploads: a large file's bytes go from here straight to the server's S3 bucket,
in parts, to URLs the server presigned; the API sees only the plan and the end.

Nothing here does I/O, as in ``calls``: what the server offers, the plan it hands out
and each part's byte range, the bodies of the calls, progress over parts sent at once.
``direct_async`` and ``direct_sync`` do the sending.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from uploads_api.client.calls import USER_AGENT, ensure_ok
from uploads_api.client.errors import IntegrityError, UploadsClientError
from uploads_api.client.models import FileRecord
from uploads_api.client.sources import CHUNK_SIZE

CAPABILITIES = "/v1/capabilities"
DIRECT_UPLOADS = "/v1/direct-uploads"
# The create call's 404 when the server stopped offering them since it was asked.
UNAVAILABLE = "direct-uploads-unavailable"
# Statuses of a server older than direct uploads: it has no capabilities route.
NOT_OFFERED = frozenset({404, 405})
# Parts in flight per file: a few fill a link; each holds a connection and one chunk.
PARTS_AT_ONCE = 4
# Aborting is a courtesy (the bucket's lifecycle rule clears what is left): never wait long.
ABORT_TIMEOUT = 10.0


@dataclass(frozen=True)
class DirectOffer:
    """``direct_uploads`` of ``GET /v1/capabilities``."""

    min_size: int
    part_size: int
    max_parts: int
    expires_in: int

    def takes(self, size: int) -> bool:
        """Whether a file of ``size`` bytes goes direct; smaller ones go through the API."""
        return size >= max(1, self.min_size)


def parse_capabilities(response: httpx.Response) -> DirectOffer | None:
    offer = ensure_ok(response).json().get("direct_uploads")
    if not offer:
        return None
    return DirectOffer(
        min_size=int(offer["min_size"]),
        part_size=int(offer["part_size"]),
        max_parts=int(offer["max_parts"]),
        expires_in=int(offer["expires_in"]),
    )


@dataclass(frozen=True)
class Part:
    """Part ``number`` (from 1): bytes ``[start, end)`` of the file, sent to ``url``."""

    number: int
    url: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def chunks(self) -> Iterator[tuple[int, int]]:
        """(offset, length) of each chunk to read: a part is never held in memory whole."""
        for offset in range(self.start, self.end, CHUNK_SIZE):
            yield offset, min(CHUNK_SIZE, self.end - offset)


@dataclass(frozen=True)
class DirectPlan:
    id: str
    parts: tuple[Part, ...]


def part_ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    """Part k holds bytes ``[(k-1) * part_size, min(k * part_size, size))``."""
    if size < 1 or part_size < 1:
        raise ValueError("size and part_size must be at least 1")
    return [(start, min(start + part_size, size)) for start in range(0, size, part_size)]


def parse_plan(response: httpx.Response, size: int) -> DirectPlan:
    """The plan of ``POST /v1/direct-uploads``, each part with its byte range. A plan
    whose parts do not cover the file exactly is refused before any byte is sent."""
    body = ensure_ok(response).json()
    part_size = int(body["part_size"])
    ranges = part_ranges(size, part_size) if part_size > 0 else []
    urls = {int(part["number"]): str(part["url"]) for part in body["parts"]}
    if not ranges or sorted(urls) != list(range(1, len(ranges) + 1)):
        raise UploadsClientError(
            f"the server's plan for {size} bytes in parts of {part_size} lists parts "
            f"{sorted(urls)[:5]}..., not 1 to {len(ranges)}"
        )
    parts = tuple(
        Part(number, urls[number], start, end)
        for number, (start, end) in enumerate(ranges, start=1)
    )
    return DirectPlan(str(body["id"]), parts)


def upload_path(upload_id: str, *rest: str) -> str:
    return "/".join([DIRECT_UPLOADS, quote(upload_id, safe=""), *rest])


def create_body(filename: str, size: int, sha256: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"filename": filename, "size": size}
    if sha256 is not None:
        body["sha256"] = sha256
    return body


def complete_body(etags: Mapping[int, str]) -> dict[str, Any]:
    return {"parts": [{"number": number, "etag": etags[number]} for number in sorted(etags)]}


def etag_of(response: httpx.Response, part: Part) -> str:
    """The part's ETag as storage sent it, quotes and all: complete hands it back as is."""
    etag: str | None = response.headers.get("etag")
    if not etag:
        raise UploadsClientError(f"storage stored part {part.number} but sent no ETag")
    return etag


def verify_direct(record: FileRecord, size: int, sha256: str) -> FileRecord:
    """The record, once it describes the bytes sent. Its sha256 may still be unknown:
    the server hashes a direct upload after it completes, and checks it against ours."""
    if record.size != size or record.sha256 not in (None, sha256):
        raise IntegrityError(
            f"the server stored {record.size} bytes with sha256 {record.sha256} "
            f"but {size} bytes with sha256 {sha256} were sent (file id {record.id})"
        )
    return record


def storage_options(timeout: httpx.Timeout, max_connections: int) -> dict[str, Any]:
    """httpx settings for the presigned URLs: no base URL and, above all, no API key,
    which must never reach storage (and would spoil the URL's signature)."""
    return {
        "headers": {"User-Agent": USER_AGENT},
        "timeout": timeout,
        "limits": httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    }


class PartsProgress:
    """Bytes sent over all parts in flight, told to ``progress`` as one running total.
    A part that starts again (a retry) takes back what it had counted. Thread-safe."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self._progress = progress
        self._sent: dict[int, int] = {}
        self._total = 0
        self._lock = threading.Lock()
        if progress is not None:
            progress(0)

    def update(self, number: int, sent: int) -> None:
        if self._progress is None:
            return
        with self._lock:
            self._total += sent - self._sent.get(number, 0)
            self._sent[number] = sent
            self._progress(self._total)
