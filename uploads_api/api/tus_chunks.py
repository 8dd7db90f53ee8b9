"""``HEAD`` and ``PATCH`` of ``/v1/tus/{upload_id}``: where an upload stands, and one
chunk appended. A resumable upload is one such request per chunk, so these two are a plain
ASGI app rather than framework routes: FastAPI's dependency solving and response
building cost about 1.7 ms of CPU per request here, as much as the chunk's own database
work. Errors are raised as everywhere else, and the app's handlers answer them.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from uploads_api.api.deps import scope_caller
from uploads_api.api.tus_headers import (
    body,
    checksum,
    count,
    describe,
    expiry_and_file,
    require_chunk_type,
)
from uploads_api.auth import Principal
from uploads_api.errors import InvalidTusRequest
from uploads_api.runtime import Runtime
from uploads_api.services.files import waiting_ids

PATH = "/v1/tus/{upload_id}"
METHODS = ("HEAD", "PATCH")


class TusChunks:
    """The ASGI endpoint of ``PATH`` for ``METHODS`` (a Starlette ``Route``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime = scope["app"].state.runtime
        headers = Headers(scope=scope)
        caller = await scope_caller(runtime, scope, headers)
        upload_id: str = scope["path_params"]["upload_id"]
        if scope["method"] == "HEAD":
            response = await _offset(runtime, caller, upload_id)
            await response(scope, receive, send)
            return
        await _append(runtime, caller, upload_id, Request(scope, receive), send)


async def _offset(runtime: Runtime, caller: Principal, upload_id: str) -> Response:
    upload = await runtime.tus_service.get(caller, upload_id)
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
    expiry_and_file(response.headers, upload)
    return response


async def _append(
    runtime: Runtime, caller: Principal, upload_id: str, request: Request, send: Send
) -> None:
    headers = request.headers
    require_chunk_type(headers)
    offset = count(headers.get("upload-offset"), "Upload-Offset")
    if offset is None:
        raise InvalidTusRequest("send Upload-Offset")
    done = await runtime.tus_service.append(
        caller,
        upload_id,
        offset,
        body(request, runtime.settings.body_timeout),
        checksum=checksum(headers.get("upload-checksum")),
        length=count(headers.get("upload-length"), "Upload-Length"),
    )
    response = Response(status_code=204)
    describe(response.headers, done, offset=True)
    await response(request.scope, request.receive, send)
    if done.file is not None:
        # Committed before the answer; handed to the task backend after it, as the
        # framework's background tasks do for the other upload routes.
        await runtime.file_service.start_processing(waiting_ids([done.file]))
