"""``POST /v1/files`` and ``PUT /v1/files/{file}``: the two upload operations.

``router`` declares them, with every parameter and answer, for the API's description
(OpenAPI). ``FileUploads``, a plain ASGI endpoint that ``app.py`` puts ahead of those
routes, serves them: a small upload is one request, and FastAPI's dependency solving and
response building cost as much CPU per request here as a durable 10 KiB upload's own work
on the event loop. Authentication, limits and problems are the same: errors are raised as
everywhere else and the app's handlers answer them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from uploads_api import metrics
from uploads_api.api.contract import BINARY, header, problem_responses
from uploads_api.api.deps import get_principal, scope_caller
from uploads_api.api.schemas import FilesCreated
from uploads_api.errors import BadRequest, ClientDisconnected, UploadsError
from uploads_api.file_json import FileOut
from uploads_api.ingest.checksums import parse_content_digest
from uploads_api.runtime import Runtime
from uploads_api.services.files import Uploaded, waiting_ids

router = APIRouter(prefix="/v1/files", tags=["files"], dependencies=[Depends(get_principal)])
PATHS = {"POST": "/v1/files", "PUT": "/v1/files/{file}"}

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
# Visible ASCII but quotes; the draft standard's quoted form is the same key.
IDEMPOTENCY_KEY_PATTERN = r'^"?[\x21\x23-\x7E]{1,255}"?$'
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
IDEMPOTENCY_KEY = Annotated[
    str | None,
    Header(
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="A key of your choosing (a random UUID, say), to send this request"
        " again safely: a retry with the same key and the same files answers the first"
        " request's answer, with `Idempotent-Replayed: true`, for `UPLOADS_IDEMPOTENCY_TTL`"
        " seconds (409 while the first is in progress, 422 for the key with other files,"
        " 410 once a file it stored was deleted)."
        " Per owner.",
    ),
]
CONTENT_DIGEST = Annotated[
    str | None,
    Header(description="RFC 9530 `sha-256=:<base64>:`; a mismatch stores nothing"),
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
DESCRIBED_ONLY = "served by FileUploads (api/uploads.py), which app.py places ahead of this route"


def _upload_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    responses = problem_responses(*codes)
    # Of the upload routes' conflicts, only `idempotency-key-in-progress`: it ends soon.
    responses[409]["headers"] = {"Retry-After": header("Seconds to wait", {"type": "integer"})}
    return responses


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
async def upload_files(idempotency_key: IDEMPOTENCY_KEY = None) -> FilesCreated:
    raise RuntimeError(DESCRIBED_ONLY)


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
async def upload_file(
    file: FILE_NAME,
    content_digest: CONTENT_DIGEST = None,
    idempotency_key: IDEMPOTENCY_KEY = None,
) -> FileOut:
    raise RuntimeError(DESCRIBED_ONLY)


class FileUploads:
    """The ASGI endpoint of ``PATHS`` (a Starlette ``Route`` each)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime = scope["app"].state.runtime
        request = Request(scope, receive)
        headers = request.headers
        caller = await scope_caller(runtime, scope, headers)
        key = _idempotency_key(headers.get("idempotency-key"))
        started = time.perf_counter()
        files = runtime.file_service
        if scope["method"] == "POST":
            uploaded = await _guarded(
                files.upload_multipart(caller, headers.get("content-type"), _body(request), key)
            )
            response = _multipart_answer(uploaded, started)
        else:
            name: str = scope["path_params"]["file"]
            uploaded = await _guarded(
                files.upload_raw(
                    caller,
                    name,
                    _body(request),
                    _content_length(headers),
                    parse_content_digest(headers.get("content-digest")),
                    key,
                )
            )
            response = _raw_answer(uploaded, started, scope.get("root_path", ""))
        await response(scope, receive, send)
        if uploaded.records:
            # Committed before the answer; handed to the task backend after it, as the
            # framework's background tasks do for the other routes.
            await files.start_processing(waiting_ids(uploaded.records))


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        yield chunk
    # Every announced byte is in. A body longer than its Content-Length makes the HTTP
    # server take the surplus for a next request, refuse it and close the connection, in
    # the same read that brought this body: a turn of the loop lets that close land, and
    # an upload whose client is gone (it got the server's 400) stores nothing.
    await asyncio.sleep(0)
    if await request.is_disconnected():
        raise ClientDisconnect


def _idempotency_key(value: str | None) -> str | None:
    """The key of an ``Idempotency-Key`` header, given bare or quoted; refused as the
    framework refuses a header that breaks its declared pattern."""
    if value is None:
        return None
    if _IDEMPOTENCY_KEY.match(value) is None:
        msg = f"String should match pattern '{IDEMPOTENCY_KEY_PATTERN}'"
        raise RequestValidationError(
            [{"type": "string_pattern_mismatch", "loc": ("header", "idempotency-key"),
              "msg": msg, "input": value, "ctx": {"pattern": IDEMPOTENCY_KEY_PATTERN}}]
        )  # fmt: skip
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError as exc:
        raise BadRequest("Content-Length is not a number") from exc


def _multipart_answer(uploaded: Uploaded, started: float) -> Response:
    if uploaded.replayed:
        return _replay(uploaded)
    records = uploaded.records
    _observe("multipart", records, started)
    if uploaded.body is not None:
        # The answer as recorded under the key, so that a replay is the same to the byte.
        return JSONResponse(uploaded.body, status_code=201)
    created = FilesCreated(files=[FileOut.of(record) for record in records])
    return Response(created.model_dump_json(), 201, media_type="application/json")


def _raw_answer(uploaded: Uploaded, started: float, root: str) -> Response:
    if uploaded.replayed:
        return _replay(uploaded, Location=f"{root}/v1/files/{uploaded.body['id']}")
    (record,) = uploaded.records
    _observe("raw", [record], started)
    location = {"Location": f"{root}/v1/files/{record.id}"}
    if uploaded.body is not None:
        return JSONResponse(uploaded.body, status_code=201, headers=location)
    body = FileOut.of(record).model_dump_json()
    return Response(body, 201, headers=location, media_type="application/json")


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
