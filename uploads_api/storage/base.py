"""The storage seam. Every backend (local disk, S3) implements ``Storage``.

Contracts are written on each method; ``tests/test_storage.py`` runs one conformance
suite against every backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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


class Storage(Protocol):
    async def open_writer(self, key: str) -> BlobWriter:
        """Start a blob at ``key``; an existing blob there is replaced on commit."""

    async def put_file(self, key: str, source: Path) -> None:
        """Store the local file ``source`` at ``key`` (it may be moved, not copied)."""

    async def fetch(self, key: str, destination: Path) -> None:
        """Copy the blob to a local file, for work that needs a path (decoders)."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` to ``end`` (exclusive; ``None`` is the end of the blob)."""

    async def size(self, key: str) -> int | None:
        """The blob's size, or ``None`` if there is no blob at ``key``."""

    async def delete(self, key: str) -> None:
        """Remove the blob; a missing blob is not an error."""

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

    async def abort_pending(self, started_before: float) -> int:
        """Abort unfinished uploads begun before that Unix time; how many were aborted."""


@runtime_checkable
class LocalPaths(Protocol):
    """An optional power: the backend keeps blobs as local files the server may send directly."""

    def path_of(self, key: str) -> Path:
        """The local path of the blob at ``key`` (which may not exist)."""
