"""``/v1/files``: upload, list, check hashes, get, delete, retry. Downloads are in
``api/downloads.py``."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from uploads_api import metrics
from uploads_api.api.contract import BINARY, header, problem_responses
from uploads_api.api.deps import FilesDep, PrincipalDep, get_principal
from uploads_api.api.schemas import FileList, FilesCreated, HashCheck, HashCheckResult
from uploads_api.db.models import CURSOR_PATTERN, FILE_STATUSES
from uploads_api.errors import BadRequest, ClientDisconnected, UploadsError
from uploads_api.file_json import FileOut
from uploads_api.ingest.checksums import parse_content_digest
from uploads_api.services.files import Uploaded, waiting_ids

router = APIRouter(prefix="/v1/files", tags=["files"], dependencies=[Depends(get_principal)])

# One path template serves three operations: PUT stores a file under a name, GET and
# DELETE take an id. OpenAPI allows one name per template, so it is `file` for all three.
FILE_ID = Annotated[str, Path(description="The file's id (32 hex digits)")]
FILE_NAME = Annotated[str, Path(description="The name to record the upload under (cleaned)")]

MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "sha256": {
                            "type": "string",
                            "pattern": "^[0-9a-fA-F]{64}$",
                            "description": "Optional: the SHA-256 of the file part after it",
                        },
                        "file": {
                            "type": "array",
                            "items": BINARY,
                            "minItems": 1,
                            "description": "One or more files (every part with a filename).",
                        },
                    },
                    "required": ["file"],
                },
                "encoding": {"file": {"contentType": "application/octet-stream"}},
            }
        },
    }
}
# An empty body is an empty file: a valid upload.
RAW_BODY: dict[str, Any] = {
    "requestBody": {"required": False, "content": {"application/octet-stream": {"schema": BINARY}}}
}
UPLOAD_CODES = (
    "bad-request",
    "checksum-mismatch",
    "body-timeout",
    "file-too-large",
    "quota-exceeded",
    "unsupported-media-type",
    "too-many-uploads",
    "insufficient-storage",
    "idempotency-key-in-progress",
    "idempotency-key-reused",
    "idempotent-files-deleted",
)
REPLAYED = "Idempotent-Replayed"
IDEMPOTENCY_KEY = Annotated[
    str | None,
    Header(
        # Visible ASCII but quotes; the draft standard's quoted form is the same key.
        pattern=r'^"?[\x21\x23-\x7E]{1,255}"?$',
        description="A key of your choosing (a random UUID, say), to send this request"
        " again safely: a retry with the same key and the same files answers the first"
        " request's answer, with `Idempotent-Replayed: true`, for `UPLOADS_IDEMPOTENCY_TTL`"
        " seconds (409 while the first is in progress, 422 for the key with other files,"
        " 410 once a file it stored was deleted)."
        " Per owner.",
    ),
]
UPLOAD_HEADERS = {
    REPLAYED: header("`true`: the answer to an earlier request with this `Idempotency-Key`")
}
FILE_LINKS = {
    "getFile": {"operationId": "getFile", "parameters": {"file": "$response.body#/id"}},
    "downloadFile": {
        "operationId": "downloadFile",
        "parameters": {"file_id": "$response.body#/id"},
    },
    "retryFile": {"operationId": "retryFile", "parameters": {"file_id": "$response.body#/id"}},
    "deleteFile": {"operationId": "deleteFile", "parameters": {"file": "$response.body#/id"}},
}


def _upload_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    responses = problem_responses(*codes)
    # Of the upload routes' conflicts, only `idempotency-key-in-progress`: it ends soon.
    responses[409]["headers"] = {"Retry-After": header("Seconds to wait", {"type": "integer"})}
    return responses


def _key(value: str | None) -> str | None:
    """The key of an ``Idempotency-Key`` header, given bare or quoted."""
    if value is not None and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _replay(uploaded: Uploaded, **headers: str) -> JSONResponse:
    metrics.IDEMPOTENT_REPLAYS.inc()
    return JSONResponse(uploaded.body, status_code=201, headers={REPLAYED: "true", **headers})


def _observe(route: str, files: list[Any], started: float) -> None:
    metrics.UPLOAD_DURATION.observe(time.perf_counter() - started)
    for item in files:
        metrics.UPLOADS.labels(route).inc()
        metrics.UPLOAD_BYTES.inc(item.size)
        metrics.UPLOAD_SIZE.observe(item.size)


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
    operation_id="uploadFiles",
    responses={
        201: {
            "headers": UPLOAD_HEADERS,
            "links": {
                "getFirstFile": {
                    "operationId": "getFile",
                    "parameters": {"file": "$response.body#/files/0/id"},
                }
            },
        },
        **_upload_responses(
            *UPLOAD_CODES, "malformed-multipart", "too-many-parts", "field-too-large", "no-files"
        ),
    },
    summary="Upload one or more files (multipart/form-data)",
)
async def upload_files(
    request: Request,
    files: FilesDep,
    caller: PrincipalDep,
    background: BackgroundTasks,
    idempotency_key: IDEMPOTENCY_KEY = None,
) -> FilesCreated | JSONResponse:
    started = time.perf_counter()
    uploaded = await _guarded(
        files.upload_multipart(
            caller, request.headers.get("content-type"), request.stream(), _key(idempotency_key)
        )
    )
    if uploaded.replayed:
        return _replay(uploaded)
    records = uploaded.records
    _observe("multipart", records, started)
    background.add_task(files.start_processing, waiting_ids(records))
    if uploaded.body is not None:
        # The answer as recorded under the key, so that a replay is the same to the byte.
        return JSONResponse(uploaded.body, status_code=201)
    return FilesCreated(files=[FileOut.of(r) for r in records])


@router.put(
    "/{file}",
    status_code=201,
    response_model=FileOut,
    openapi_extra=RAW_BODY,
    operation_id="uploadFile",
    responses={
        201: {
            "headers": {"Location": header("The new file's URL"), **UPLOAD_HEADERS},
            "links": FILE_LINKS,
        },
        **_upload_responses(*UPLOAD_CODES),
    },
    summary="Upload one file as the raw request body (curl -T)",
)
async def upload_raw(
    file: FILE_NAME,
    request: Request,
    response: Response,
    files: FilesDep,
    caller: PrincipalDep,
    background: BackgroundTasks,
    content_digest: Annotated[
        str | None,
        Header(description="RFC 9530 `sha-256=:<base64>:`; a mismatch stores nothing"),
    ] = None,
    idempotency_key: IDEMPOTENCY_KEY = None,
) -> FileOut | JSONResponse:
    started = time.perf_counter()
    length_header = request.headers.get("content-length")
    try:
        content_length = int(length_header) if length_header is not None else None
    except ValueError as exc:
        raise BadRequest("Content-Length is not a number") from exc
    expected = parse_content_digest(content_digest)
    uploaded = await _guarded(
        files.upload_raw(
            caller, file, request.stream(), content_length, expected, _key(idempotency_key)
        )
    )
    root = request.scope.get("root_path", "")
    if uploaded.replayed:
        return _replay(uploaded, Location=f"{root}/v1/files/{uploaded.body['id']}")
    (record,) = uploaded.records
    _observe("raw", [record], started)
    background.add_task(files.start_processing, waiting_ids([record]))
    location = f"{root}/v1/files/{record.id}"
    if uploaded.body is not None:
        return JSONResponse(uploaded.body, status_code=201, headers={"Location": location})
    response.headers["Location"] = location
    return FileOut.of(record)


@router.get(
    "",
    response_model=FileList,
    operation_id="listFiles",
    responses=problem_responses(),
    summary="List files, newest first",
)
async def list_files(
    files: FilesDep,
    caller: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page"),
    ] = None,
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
    operation_id="checkHashes",
    responses=problem_responses("bad-request"),
    summary="Which of these sha256 hashes are already uploaded",
)
async def check_hashes(body: HashCheck, files: FilesDep, caller: PrincipalDep) -> HashCheckResult:
    present, missing = await files.check(caller, body.sha256)
    return HashCheckResult(present=present, missing=missing)


@router.get(
    "/{file}",
    response_model=FileOut,
    operation_id="getFile",
    responses=problem_responses("not-found"),
    summary="One file",
)
async def get_file(
    file: FILE_ID,
    files: FilesDep,
    caller: PrincipalDep,
    wait: Annotated[float, Query(ge=0, le=60, description="hold until processed, seconds")] = 0,
) -> FileOut:
    return FileOut.of(await files.get(caller, file, wait))


@router.delete(
    "/{file}",
    status_code=204,
    operation_id="deleteFile",
    responses=problem_responses("not-found"),
    summary="Delete a file",
)
async def delete_file(
    file: FILE_ID, files: FilesDep, caller: PrincipalDep, background: BackgroundTasks
) -> Response:
    await files.delete(caller, file)
    background.add_task(files.start_processing, [file])
    return Response(status_code=204)


@router.post(
    "/{file_id}/retry",
    response_model=FileOut,
    operation_id="retryFile",
    responses=problem_responses("not-found"),
    summary="Re-queue failed tasks",
)
async def retry_file(
    file_id: FILE_ID, files: FilesDep, caller: PrincipalDep, background: BackgroundTasks
) -> FileOut:
    record = await files.retry(caller, file_id)
    background.add_task(files.start_processing, [file_id])
    return FileOut.of(record)
