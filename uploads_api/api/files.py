"""``/v1/files``: upload, read, list, download, delete, retry."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from uploads_api import metrics
from uploads_api.api.deps import FilesDep, PrincipalDep, get_principal
from uploads_api.api.problems import COMMON_PROBLEMS, problem_doc
from uploads_api.api.ranges import parse_range
from uploads_api.api.schemas import FileList, FileOut, FilesCreated, HashCheck, HashCheckResult
from uploads_api.db.models import FILE_STATUSES
from uploads_api.errors import BadRequest, ClientDisconnected, UploadsError
from uploads_api.ingest.checksums import parse_content_digest
from uploads_api.ingest.names import content_disposition
from uploads_api.services.files import waiting_ids

# User bytes never run as a page, even if a browser is talked into rendering them.
USER_CONTENT_CSP = "default-src 'none'; sandbox"
# Types a browser would run or render as a document: sent as plain bytes instead (the
# record keeps the sniffed type), on top of the attachment disposition, nosniff and the CSP.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/ecmascript",
    }
)

router = APIRouter(
    prefix="/v1/files",
    tags=["files"],
    dependencies=[Depends(get_principal)],
    responses=COMMON_PROBLEMS,
)

MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "description": "One or more files (every part with a filename).",
                        }
                    },
                    "required": ["file"],
                },
                "encoding": {"file": {"contentType": "application/octet-stream"}},
            }
        },
    }
}
RAW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_PROBLEM_TEXT = {
    400: "Malformed body or cursor, or a checksum that does not match",
    404: "No such file",
    408: "The request body stalled",
    413: "File too large, or over the owner's quota",
    415: "Not a multipart/form-data body, or a file type this server refuses",
    416: "Range not satisfiable",
    422: "No file in the request",
    429: "Too many uploads at once for this key",
    503: "Database or storage unavailable",
    507: "No room left in storage",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The problem+json answers one route can give, for its OpenAPI description."""
    return {status: problem_doc(_PROBLEM_TEXT[status]) for status in statuses}


UPLOAD_PROBLEMS = problems(400, 408, 413, 415, 422, 429, 503, 507)


def _observe(route: str, files: list[Any], started: float) -> None:
    metrics.UPLOAD_DURATION.observe(time.perf_counter() - started)
    for item in files:
        metrics.UPLOADS.labels(route).inc()
        metrics.UPLOAD_BYTES.inc(item.size)
        metrics.UPLOAD_SIZE.observe(item.size)


def served_type(content_type: str) -> str:
    """The ``Content-Type`` a download is sent with: active content goes as plain bytes."""
    essence = content_type.split(";")[0].strip().lower()
    if essence in ACTIVE_TYPES or essence.endswith("+xml"):
        return "application/octet-stream"
    return content_type


async def _guarded(coro: Any) -> Any:
    try:
        return await coro
    except ClientDisconnect as exc:
        metrics.UPLOAD_REJECTED.labels("client-disconnected").inc()
        raise ClientDisconnected("the client disconnected before the upload finished") from exc
    except UploadsError as exc:
        metrics.UPLOAD_REJECTED.labels(exc.code).inc()
        raise


@router.post(
    "",
    status_code=201,
    response_model=FilesCreated,
    openapi_extra=MULTIPART_BODY,
    responses=UPLOAD_PROBLEMS,
    summary="Upload one or more files (multipart/form-data)",
)
async def upload_files(
    request: Request, files: FilesDep, caller: PrincipalDep, background: BackgroundTasks
) -> FilesCreated:
    started = time.perf_counter()
    records = await _guarded(
        files.upload_multipart(caller, request.headers.get("content-type"), request.stream())
    )
    _observe("multipart", records, started)
    background.add_task(files.start_processing, waiting_ids(records))
    return FilesCreated(files=[FileOut.of(r) for r in records])


@router.put(
    "/{filename}",
    status_code=201,
    response_model=FileOut,
    openapi_extra=RAW_BODY,
    responses=UPLOAD_PROBLEMS,
    summary="Upload one file as the raw request body (curl -T)",
)
async def upload_raw(
    filename: str,
    request: Request,
    files: FilesDep,
    caller: PrincipalDep,
    background: BackgroundTasks,
) -> FileOut:
    started = time.perf_counter()
    length_header = request.headers.get("content-length")
    try:
        content_length = int(length_header) if length_header is not None else None
    except ValueError as exc:
        raise BadRequest("Content-Length is not a number") from exc
    expected = parse_content_digest(request.headers.get("content-digest"))
    record = await _guarded(
        files.upload_raw(caller, filename, request.stream(), content_length, expected)
    )
    _observe("raw", [record], started)
    background.add_task(files.start_processing, waiting_ids([record]))
    return FileOut.of(record)


@router.get(
    "", response_model=FileList, responses=problems(400), summary="List files, newest first"
)
async def list_files(
    files: FilesDep,
    caller: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(FILE_STATUSES) + ")$")] = None,
    sha256: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$")] = None,
) -> FileList:
    records, next_cursor = await files.list_files(
        caller, limit=limit, cursor=cursor, status=status, sha256=sha256
    )
    return FileList(files=[FileOut.of(r) for r in records], next_cursor=next_cursor)


@router.post(
    "/check",
    response_model=HashCheckResult,
    responses=problems(400),
    summary="Which of these sha256 hashes are already uploaded",
)
async def check_hashes(body: HashCheck, files: FilesDep, caller: PrincipalDep) -> HashCheckResult:
    present, missing = await files.check(caller, body.sha256)
    return HashCheckResult(present=present, missing=missing)


@router.get("/{file_id}", response_model=FileOut, responses=problems(404), summary="One file")
async def get_file(
    file_id: str,
    files: FilesDep,
    caller: PrincipalDep,
    wait: Annotated[float, Query(ge=0, le=60, description="hold until processed, seconds")] = 0,
) -> FileOut:
    return FileOut.of(await files.get(caller, file_id, wait))


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **problems(404, 416)},
    summary="Download the original bytes",
)
async def download(
    file_id: str, request: Request, files: FilesDep, caller: PrincipalDep
) -> Response:
    record = await files.get(caller, file_id)
    etag = f'"{record.sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(record.filename),
        "Cache-Control": "private, max-age=0, must-revalidate",
        "Content-Security-Policy": USER_CONTENT_CSP,
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    span = None
    if_range = request.headers.get("if-range")
    if if_range is None or if_range == etag:
        span = parse_range(request.headers.get("range"), record.size)
    start, end = span if span else (0, record.size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if span:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{record.size}"
    return StreamingResponse(
        files.content(record, start, end),
        status_code=status,
        headers=headers,
        media_type=served_type(record.content_type),
    )


@router.get(
    "/{file_id}/thumbnails/{size}",
    response_class=StreamingResponse,
    responses={200: {"content": {"image/webp": {}}}, **problems(404)},
    summary="A generated thumbnail (404 until it exists)",
)
async def thumbnail(file_id: str, size: int, files: FilesDep, caller: PrincipalDep) -> Response:
    thumb, blob = await files.thumbnail(caller, file_id, size)
    headers = {
        "Content-Length": str(blob.length),
        "Cache-Control": "private, max-age=86400",
        "Content-Disposition": "inline",
        "Content-Security-Policy": USER_CONTENT_CSP,
    }
    return StreamingResponse(blob.body, headers=headers, media_type=thumb.content_type)


@router.delete("/{file_id}", status_code=204, responses=problems(404), summary="Delete a file")
async def delete_file(
    file_id: str, files: FilesDep, caller: PrincipalDep, background: BackgroundTasks
) -> Response:
    await files.delete(caller, file_id)
    background.add_task(files.start_processing, [file_id])
    return Response(status_code=204)


@router.post(
    "/{file_id}/retry",
    response_model=FileOut,
    responses=problems(404),
    summary="Re-queue failed tasks",
)
async def retry_file(
    file_id: str, files: FilesDep, caller: PrincipalDep, background: BackgroundTasks
) -> FileOut:
    record = await files.retry(caller, file_id)
    background.add_task(files.start_processing, [file_id])
    return FileOut.of(record)
