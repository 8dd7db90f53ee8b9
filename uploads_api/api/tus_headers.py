"""tus request headers to values and values to response headers, for ``api/tus.py`` and
``api/tus_chunks.py``."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Mapping
from datetime import UTC
from email.utils import format_datetime

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect, Request

from uploads_api.db.tus_uploads import TusUpload
from uploads_api.errors import ClientDisconnected, InvalidTusRequest, UnsupportedMediaType
from uploads_api.ingest.stream import with_timeout
from uploads_api.services.tus import Appended
from uploads_api.services.tus_writer import Checksum

CHUNK_TYPE = "application/offset+octet-stream"


def describe(headers: MutableHeaders, done: Appended, *, offset: bool) -> None:
    if offset:
        headers["Upload-Offset"] = str(done.upload.offset)
    expiry_and_file(headers, done.upload, done.file.id if done.file else None)


def expiry_and_file(headers: MutableHeaders, upload: TusUpload, file_id: str | None = None) -> None:
    file_id = file_id or upload.file_id
    if file_id is None:
        headers["Upload-Expires"] = format_datetime(
            upload.expires_at.replace(tzinfo=UTC), usegmt=True
        )
        return
    headers["File-Id"] = file_id
    headers["Link"] = f'</v1/files/{file_id}>; rel="file"'


def count(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise InvalidTusRequest(f"{name} is not a non-negative integer")
    return int(value)


def checksum(value: str | None) -> Checksum | None:
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    try:
        digest = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise InvalidTusRequest("Upload-Checksum is not '<algorithm> <base64>'") from exc
    return Checksum(algorithm.lower(), digest)


def has_body(headers: Mapping[str, str]) -> bool:
    length = headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in headers


def require_chunk_type(headers: Mapping[str, str]) -> None:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != CHUNK_TYPE:
        raise UnsupportedMediaType(f"a tus body is sent as {CHUNK_TYPE}")


async def body(request: Request, timeout: float) -> AsyncIterator[bytes]:
    try:
        async for chunk in with_timeout(request.stream(), timeout):
            yield chunk
    except ClientDisconnect as exc:
        raise ClientDisconnected("the client went away mid-chunk") from exc
