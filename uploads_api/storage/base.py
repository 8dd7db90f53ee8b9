"""The storage seam. Every backend (local disk, S3) implements ``Storage``.

Contracts are written on each method; ``tests/test_storage.py`` runs one conformance
suite against every backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

# A piece of a file: bytes, or a view of bytes (never of something that may change).
Buffer = bytes | memoryview


class BlobWriter(Protocol):
    """One blob being written. Nothing is visible at its key until ``commit``."""

    async def write(self, *chunks: Buffer) -> None:
        """Append the chunks, in order. May raise ``OSError`` (disk full: ``errno.ENOSPC``)."""

    async def commit(self) -> None:
        """Make the blob durable and visible at its key, atomically. Idempotent."""

    async def abort(self) -> None:
        """Drop everything written. Safe to call after a failure and more than once."""


class BlobTarget(Protocol):
    """What an upload's intake needs of storage: new blobs, and taking them back."""

    async def open_writer(self, key: str) -> BlobWriter:
        """Start a blob at ``key``; an existing blob there is replaced on commit."""

    async def delete(self, key: str) -> None:
        """Remove the blob; a missing blob is not an error."""


class Storage(BlobTarget, Protocol):
    async def put_file(self, key: str, source: Path) -> None:
        """Store the local file ``source`` at ``key`` (it may be moved, not copied)."""

    async def fetch(self, key: str, destination: Path) -> None:
        """Copy the blob to a local file, for work that needs a path (decoders)."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` to ``end`` (exclusive; ``None`` is the end of the blob)."""

    async def size(self, key: str) -> int | None:
        """The blob's size, or ``None`` if there is no blob at ``key``."""

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every blob under ``prefix/``."""

    def list(self, prefix: str) -> AsyncIterator[tuple[str, float]]:
        """Every ``(key, modified_unix_time)`` under ``prefix``."""

    async def check(self) -> None:
        """Raise if the backend cannot be written to (readiness probe)."""


@runtime_checkable
class PendingUploads(Protocol):
    """An optional power: the backend keeps unfinished uploads (S3 multipart) that a killed
    process leaves behind, invisible to ``list``."""

    async def pending_uploads(self, started_before: float) -> list[tuple[str, str]]:
        """Unfinished uploads begun before that Unix time: (storage key, upload id) each."""

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Drop an unfinished upload and the parts it holds."""


@runtime_checkable
class BatchCommit(Protocol):
    """An optional power of a ``BlobTarget`` (local disk) for the blobs of one request:
    each made durable as soon as its last bytes are in (``seal``: the write and the file's
    sync in one step), then all named at their keys together, each directory synced once
    (``commit_batch``), where a ``commit`` per blob would sync a directory every time."""

    async def seal(self, writer: BlobWriter, *last: Buffer) -> None:
        """Append ``last`` to a writer of this target, then make its bytes durable; nothing
        is visible at its key yet, and ``abort`` still drops it. May raise ``OSError``."""

    async def commit_batch(self, writers: Sequence[BlobWriter]) -> None:
        """Make every writer's blob visible at its key, and durable there, as each one's
        ``commit`` would (a writer not sealed is sealed first). If it raises, blobs already
        named stay: the caller removes them, as after a failed ``commit``."""


@runtime_checkable
class LocalPaths(Protocol):
    """An optional power: the backend keeps blobs as local files the server may send directly."""

    def path_of(self, key: str) -> Path:
        """The local path of the blob at ``key`` (which may not exist)."""


class PartsRejected(Exception):
    """The backend refused to assemble an upload from the parts named: an ETag that is not
    its part's, a part never sent, or an upload that no longer exists."""


@runtime_checkable
class DirectTransfer(Protocol):
    """An optional power: clients move bytes straight to and from the backend through
    presigned URLs (S3), and the API only signs and checks."""

    async def start_upload(self, key: str) -> str:
        """Begin a multipart upload at ``key``; its upload id."""

    async def part_urls(
        self, key: str, upload_id: str, count: int, expires_in: int
    ) -> Sequence[str]:
        """URLs to PUT parts ``1..count`` to, each valid for ``expires_in`` seconds."""

    async def finish_upload(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        """Assemble ``(number, etag)`` parts into the blob at ``key``; ``PartsRejected`` if
        the backend refuses them (the upload then stays open)."""

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Drop an unfinished upload and its parts; one already gone is not an error."""

    async def download_url(
        self, key: str, *, disposition: str, content_type: str, expires_in: int
    ) -> str:
        """A URL that answers GET with the blob, with these ``Content-Disposition`` and
        ``Content-Type`` headers, for ``expires_in`` seconds."""
