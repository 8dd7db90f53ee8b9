"""``/v1/tus/``: resumable uploads, tus 1.0 (core, creation, creation-with-upload,
creation-defer-length, expiration, checksum, termination, concatenation).
``api/tus_protocol.py`` does what every exchange needs (OPTIONS, the version check, the
method override). The routes turn headers into values and values into headers;
``TusService`` does the rest.

The protocol is tus's (https://tus.io/protocols/resumable-upload), so these routes are not
in the OpenAPI description; ``docs/resumable.md`` walks through them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from datetime import UTC
from email.utils import format_datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from uploads_api.api.deps import FilesDep, PrincipalDep, TusDep, get_principal
from uploads_api.db.tus_uploads import TusUpload
from uploads_api.errors import ClientDisconnected, InvalidTusRequest, UnsupportedMediaType
from uploads_api.ingest.stream import with_timeout
from uploads_api.services.files import waiting_ids
from uploads_api.services.tus import Appended
from uploads_api.services.tus_writer import Checksum

router = APIRouter(
    prefix="/v1/tus",
    tags=["resumable"],
    include_in_schema=False,
    dependencies=[Depends(get_principal)],
)
CHUNK_TYPE = "application/offset+octet-stream"


class UnfinishedUpload(BaseModel):
    id: str
    url: str
    offset: int
    length: int | None
    expires_at: str
    metadata: dict[str, str]


class UnfinishedUploads(BaseModel):
    uploads: list[UnfinishedUpload]
    next_cursor: str | None


@router.post("/", status_code=201)
async def create_upload(
    request: Request,
    tus: TusDep,
    files: FilesDep,
    caller: PrincipalDep,
    background: BackgroundTasks,
) -> Response:
    headers = request.headers
    concat = headers.get("upload-concat")
    if concat is not None and concat.startswith("final;"):
        done = await tus.join(caller, concat, _part_ids(concat), headers.get("upload-metadata"))
        response = Response(status_code=201, headers={"Location": _url(request, done.upload.id)})
        _describe(response, done, offset=False)
        _dispatch(background, files, done)
        return response
    if concat not in (None, "partial"):
        raise InvalidTusRequest("Upload-Concat is 'partial' or 'final;<upload URLs>'")
    length = _count(headers.get("upload-length"), "Upload-Length")
    if length is None and headers.get("upload-defer-length") != "1":
        raise InvalidTusRequest("send Upload-Length, or Upload-Defer-Length: 1")
    body = None
    if _has_body(request):
        _require_chunk_type(request)
        body = _body(request, tus.settings.body_timeout)
    done = await tus.start(
        caller,
        length,
        headers.get("upload-metadata"),
        body,
        _checksum(headers.get("upload-checksum")),
        partial=concat == "partial",
    )
    response = Response(status_code=201, headers={"Location": _url(request, done.upload.id)})
    _describe(response, done, offset=body is not None or length == 0)
    _dispatch(background, files, done)
    return response


@router.get("/", response_model=UnfinishedUploads)
async def list_uploads(
    request: Request,
    tus: TusDep,
    caller: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern="^[0-9a-f]{32}$")] = None,
) -> UnfinishedUploads:
    page, next_cursor = await tus.unfinished(caller, limit, cursor)
    return UnfinishedUploads(
        uploads=[
            UnfinishedUpload(
                id=upload.id,
                url=_url(request, upload.id),
                offset=upload.offset,
                length=upload.length,
                expires_at=upload.expires_at.isoformat() + "Z",
                metadata=dict(upload.metadata or {}),
            )
            for upload in page
        ],
        next_cursor=next_cursor,
    )


@router.head("/{upload_id}")
async def upload_offset(upload_id: str, tus: TusDep, caller: PrincipalDep) -> Response:
    upload = await tus.get(caller, upload_id)
    response = Response(status_code=200, headers={"Cache-Control": "no-store"})
    response.headers["Upload-Offset"] = str(upload.offset)
    if upload.length is None:
        response.headers["Upload-Defer-Length"] = "1"
    else:
        response.headers["Upload-Length"] = str(upload.length)
    if upload.metadata_header:
        response.headers["Upload-Metadata"] = upload.metadata_header
    if upload.concat:
        response.headers["Upload-Concat"] = upload.concat
    _expiry_and_file(response, upload)
    return response


@router.patch("/{upload_id}", status_code=204)
async def append(
    upload_id: str,
    request: Request,
    tus: TusDep,
    files: FilesDep,
    caller: PrincipalDep,
    background: BackgroundTasks,
) -> Response:
    _require_chunk_type(request)
    headers = request.headers
    offset = _count(headers.get("upload-offset"), "Upload-Offset")
    if offset is None:
        raise InvalidTusRequest("send Upload-Offset")
    done = await tus.append(
        caller,
        upload_id,
        offset,
        _body(request, tus.settings.body_timeout),
        checksum=_checksum(headers.get("upload-checksum")),
        length=_count(headers.get("upload-length"), "Upload-Length"),
    )
    response = Response(status_code=204)
    _describe(response, done, offset=True)
    _dispatch(background, files, done)
    return response


@router.delete("/{upload_id}", status_code=204)
async def terminate(upload_id: str, tus: TusDep, caller: PrincipalDep) -> Response:
    await tus.terminate(caller, upload_id)
    return Response(status_code=204)


def _describe(response: Response, done: Appended, *, offset: bool) -> None:
    if offset:
        response.headers["Upload-Offset"] = str(done.upload.offset)
    _expiry_and_file(response, done.upload, done.file.id if done.file else None)


def _expiry_and_file(response: Response, upload: TusUpload, file_id: str | None = None) -> None:
    file_id = file_id or upload.file_id
    if file_id is None:
        response.headers["Upload-Expires"] = format_datetime(
            upload.expires_at.replace(tzinfo=UTC), usegmt=True
        )
        return
    response.headers["File-Id"] = file_id
    response.headers["Link"] = f'</v1/files/{file_id}>; rel="file"'


def _dispatch(background: BackgroundTasks, files: FilesDep, done: Appended) -> None:
    if done.file is not None:
        background.add_task(files.start_processing, waiting_ids([done.file]))


def _url(request: Request, upload_id: str) -> str:
    """The upload's URL: absolute under UPLOADS_PUBLIC_URL when set; else a path, which
    clients resolve against the address they used (a page keeps to its own origin)."""
    base = request.app.state.runtime.settings.public_url or request.scope.get("root_path", "")
    return f"{base.rstrip('/')}/v1/tus/{upload_id}"


def _part_ids(concat: str) -> list[str]:
    """The upload ids in ``final;<URL> <URL>...`` (absolute URLs or paths)."""
    ids = []
    for url in concat.removeprefix("final;").split():
        path = urlsplit(url).path
        if "/v1/tus/" not in path:
            raise InvalidTusRequest(f"{url!r} in Upload-Concat is not an upload of this server")
        ids.append(path.rstrip("/").rsplit("/", 1)[-1])
    return ids


def _count(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise InvalidTusRequest(f"{name} is not a non-negative integer")
    return int(value)


def _checksum(value: str | None) -> Checksum | None:
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    try:
        digest = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise InvalidTusRequest("Upload-Checksum is not '<algorithm> <base64>'") from exc
    return Checksum(algorithm.lower(), digest)


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in request.headers


def _require_chunk_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != CHUNK_TYPE:
        raise UnsupportedMediaType(f"a tus body is sent as {CHUNK_TYPE}")


async def _body(request: Request, timeout: float) -> AsyncIterator[bytes]:
    try:
        async for chunk in with_timeout(request.stream(), timeout):
            yield chunk
    except ClientDisconnect as exc:
        raise ClientDisconnected("the client went away mid-chunk") from exc
