"""A body read only to learn what it holds: each file is hashed, sized and checked as an
upload's would be, and its bytes are dropped. An idempotent retry's body is read so, to
compare it with the first request's without storing anything twice."""

from __future__ import annotations

from uploads_api.storage import BlobWriter, Buffer


class _Dropped:
    """A ``BlobWriter`` that keeps nothing."""

    async def write(self, *chunks: Buffer) -> None:
        pass

    async def commit(self) -> None:
        pass

    async def abort(self) -> None:
        pass


class DiscardTarget:
    """A ``BlobTarget`` whose blobs go nowhere."""

    async def open_writer(self, key: str) -> BlobWriter:
        return _Dropped()

    async def delete(self, key: str) -> None:
        pass


DISCARD = DiscardTarget()
