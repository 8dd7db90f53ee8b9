"""Raw-body intake: the request body is the file (``curl -T``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from uploads_api.errors import PayloadTooLarge
from uploads_api.ingest.group import SinkGroup
from uploads_api.ingest.limits import IngestLimits
from uploads_api.ingest.sink import ReceivedFile
from uploads_api.storage import Storage


async def receive_raw(
    storage: Storage,
    limits: IngestLimits,
    filename: str,
    stream: AsyncIterator[bytes],
    content_length: int | None,
) -> ReceivedFile:
    if content_length is not None and content_length > limits.max_file_size:
        # Refuse before reading a byte: the client said how much it will send.
        raise PayloadTooLarge(
            f"the body is larger than the limit of {limits.max_file_size} bytes",
            limit=limits.max_file_size,
        )
    async with SinkGroup(storage, limits.max_file_size) as group:
        sink = await group.open(filename)
        async for chunk in stream:
            await sink.feed(chunk)
        await group.finish(sink)
        (received,) = await group.commit_all()
    return received
