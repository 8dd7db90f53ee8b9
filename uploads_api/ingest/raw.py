"""Raw-body intake: the request body is the file (``curl -T``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from uploads_api.db.models import NewFile
from uploads_api.errors import PayloadTooLarge
from uploads_api.ingest.group import SinkGroup
from uploads_api.ingest.policy import UploadPolicy
from uploads_api.storage import BlobTarget


async def receive_raw(
    storage: BlobTarget,
    policy: UploadPolicy,
    filename: str,
    stream: AsyncIterator[bytes],
    content_length: int | None,
    expected_sha256: str | None = None,
) -> NewFile:
    if content_length is not None and content_length > policy.max_file_size:
        # Refuse before reading a byte: the client said how much it will send.
        raise PayloadTooLarge(
            f"the body is larger than the limit of {policy.max_file_size} bytes",
            limit=policy.max_file_size,
        )
    async with SinkGroup(storage, policy) as group:
        sink = await group.open(filename, expected_sha256)
        async for chunk in stream:
            await sink.feed(chunk)
        await group.finish(sink)
        (received,) = await group.commit_all()
    return received
