"""``/v1/tus/``: resumable uploads, tus 1.0 (core, creation, creation-with-upload,
creation-defer-length, expiration, checksum, termination, concatenation).
``api/tus_protocol.py`` does what every exchange needs (OPTIONS, the version check, the
method override); ``api/tus_chunks.py`` answers ``HEAD`` and ``PATCH``, a request per
chunk. The routes turn headers into values and values into headers; ``TusService`` does
the rest.

The protocol is tus's (https://tus.io/protocols/resumable-upload), so these routes are not
in the OpenAPI description; ``docs/resumable.md`` walks through them.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Response
from pydantic import BaseModel

from uploads_api.api.deps import FilesDep, PrincipalDep, TusDep, get_principal
from uploads_api.api.tus_headers import body as tus_body
from uploads_api.api.tus_headers import (
    checksum,
    count,
    describe,
    has_body,
    require_chunk_type,
)
from uploads_api.errors import InvalidTusRequest
from uploads_api.services.files import waiting_ids
from uploads_api.services.tus import Appended

router = APIRouter(
    prefix="/v1/tus",
    tags=["resumable"],
    include_in_schema=False,
    dependencies=[Depends(get_principal)],
)


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
        describe(response.headers, done, offset=False)
        _dispatch(background, files, done)
        return response
    if concat not in (None, "partial"):
        raise InvalidTusRequest("Upload-Concat is 'partial' or 'final;<upload URLs>'")
    length = count(headers.get("upload-length"), "Upload-Length")
    if length is None and headers.get("upload-defer-length") != "1":
        raise InvalidTusRequest("send Upload-Length, or Upload-Defer-Length: 1")
    body = None
    if has_body(request.headers):
        require_chunk_type(request.headers)
        body = tus_body(request, tus.settings.body_timeout)
    done = await tus.start(
        caller,
        length,
        headers.get("upload-metadata"),
        body,
        checksum(headers.get("upload-checksum")),
        partial=concat == "partial",
    )
    response = Response(status_code=201, headers={"Location": _url(request, done.upload.id)})
    describe(response.headers, done, offset=body is not None or length == 0)
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


@router.delete("/{upload_id}", status_code=204)
async def terminate(upload_id: str, tus: TusDep, caller: PrincipalDep) -> Response:
    await tus.terminate(caller, upload_id)
    return Response(status_code=204)


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
