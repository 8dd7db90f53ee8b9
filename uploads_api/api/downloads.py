"""``/v1/files/{file_id}/content`` and ``/thumbnails/{size}``: a file's bytes, served so
that a browser never runs them as a page of this origin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Response
from fastapi.responses import StreamingResponse

from uploads_api.api.contract import BINARY, header, problem_responses
from uploads_api.api.deps import FilesDep, ReaderDep
from uploads_api.api.ranges import parse_range
from uploads_api.ingest.names import content_disposition
from uploads_api.media.outputs import OUTPUTS

# A key, or a signed link (`?link=`) made for the very path: every route here takes a
# `ReaderDep`, which checks one or the other.
router = APIRouter(prefix="/v1/files", tags=["files"])
# Through a link, a thumbnail may be kept by any cache, never longer than the link lives.
LINK_CACHE = "`public, max-age=<seconds the link has left>, immutable` through a link"

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
FILE_ID = Annotated[str, Path(description="The file's id (32 hex digits)")]
_CONTENT_HEADERS: dict[str, Any] = {
    "ETag": header("The quoted SHA-256 of the bytes"),
    "Accept-Ranges": header("`bytes`"),
    "Content-Disposition": header("`attachment`, with the file's name"),
    "Content-Length": header("Bytes in this response", {"type": "integer"}),
    "Cache-Control": header("`private, max-age=0, must-revalidate` (also through a link)"),
}
CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The bytes as uploaded; `Content-Type` is the sniffed type, except"
        " active content (HTML, SVG, XML, JavaScript), sent as `application/octet-stream`",
        # `*/*` says any type can come; `application/octet-stream` is the one generated
        # clients know to read as bytes.
        "content": {"*/*": {"schema": BINARY}, "application/octet-stream": {"schema": BINARY}},
        "headers": _CONTENT_HEADERS,
    },
    206: {
        "description": "The one byte range asked for",
        "content": {"*/*": {"schema": BINARY}, "application/octet-stream": {"schema": BINARY}},
        "headers": {**_CONTENT_HEADERS, "Content-Range": header("`bytes <first>-<last>/<size>`")},
    },
    302: {
        "description": "With UPLOADS_S3_PRESIGNED_DOWNLOADS: the bytes are at `Location`, a"
        " presigned storage URL living a few minutes (never past a signed link's expiry)",
        "headers": {"Location": header("The presigned URL"), "Cache-Control": header("`no-store`")},
    },
    304: {"description": "`If-None-Match` named the current ETag", "headers": _CONTENT_HEADERS},
    **problem_responses("not-found", "range-not-satisfiable", "invalid-link", "link-expired"),
}
# The configured format's type; `application/octet-stream` for clients that read bytes.
THUMBNAIL_TYPES = sorted({output.content_type for output in OUTPUTS.values()})


# The operations a signed link opens, by path.
LINK_PATHS = (
    "/v1/files/{file_id}/content",
    "/v1/files/{file_id}/thumbnails/{size}",
    "/v1/files/{file_id}/variants/{spec}",
)


def describe_link_access(schema: dict[str, Any]) -> None:
    """These operations take a key or, in its place, a `link`: the key is not required
    (an empty requirement is OpenAPI's "no credentials"), and without either it is 401."""
    for path in LINK_PATHS:
        operation = schema["paths"][path]["get"]
        operation["security"] = [*operation.get("security", []), {}]


def served_type(content_type: str) -> str:
    """The ``Content-Type`` a download is sent with: active content goes as plain bytes."""
    essence = content_type.split(";")[0].strip().lower()
    if essence in ACTIVE_TYPES or essence.endswith("+xml"):
        return "application/octet-stream"
    return content_type


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    operation_id="downloadFile",
    responses=CONTENT_RESPONSES,
    summary="Download the original bytes",
)
async def download(
    file_id: FILE_ID,
    files: FilesDep,
    reader: ReaderDep,
    range_: Annotated[
        str | None,
        Header(alias="Range", description="One byte range (`bytes=0-1023`); others: 200"),
    ] = None,
    if_none_match: Annotated[str | None, Header(description="An ETag: 304 if it matches")] = None,
    if_range: Annotated[
        str | None, Header(description="An ETag: the Range applies only if it matches")
    ] = None,
) -> Response:
    caller = reader.caller
    record = await files.get(caller, file_id)
    # A direct upload has no hash until its verify task has read it back: no ETag till then.
    etag = f'"{record.sha256}"' if record.sha256 else None
    headers = {
        **({"ETag": etag} if etag else {}),
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(record.filename),
        # The same through a link: max-age=0 is already within any link's life.
        "Cache-Control": "private, max-age=0, must-revalidate",
        "Content-Security-Policy": USER_CONTENT_CSP,
    }
    if (
        etag is not None
        and if_none_match is not None
        and (etag in if_none_match or if_none_match.strip() == "*")
    ):
        return Response(status_code=304, headers=headers)
    presigned = await files.presigned_content(
        caller,
        record,
        disposition=headers["Content-Disposition"],
        content_type=served_type(record.content_type),
        max_age=reader.link.seconds_left() if reader.link else None,
    )
    if presigned is not None:
        # The bytes come from storage; a Range header goes along with the redirect.
        return Response(
            status_code=302, headers={"Location": presigned, "Cache-Control": "no-store"}
        )
    span = None
    if if_range is None or (etag is not None and if_range == etag):
        span = parse_range(range_, record.size)
    start, end = span if span else (0, record.size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if span:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{record.size}"
    return StreamingResponse(
        files.content(caller, record, start, end),
        status_code=status,
        headers=headers,
        media_type=served_type(record.content_type),
    )


@router.get(
    "/{file_id}/thumbnails/{size}",
    response_class=StreamingResponse,
    operation_id="getThumbnail",
    responses={
        200: {
            "description": "The thumbnail, in the format the server is configured for",
            "content": {
                media: {"schema": BINARY}
                for media in [*THUMBNAIL_TYPES, "application/octet-stream"]
            },
            "headers": {
                "Content-Length": header("Bytes", {"type": "integer"}),
                "Cache-Control": header(f"`private, max-age=86400` with a key; {LINK_CACHE}"),
            },
        },
        **problem_responses("not-found", "invalid-link", "link-expired"),
    },
    summary="A generated thumbnail (404 until it exists)",
)
async def thumbnail(
    file_id: FILE_ID,
    size: Annotated[int, Path(description="One of the configured thumbnail sizes")],
    files: FilesDep,
    reader: ReaderDep,
) -> Response:
    thumb, blob = await files.thumbnail(reader.caller, file_id, size)
    headers = {
        "Content-Length": str(blob.length),
        "Cache-Control": reader.cache_control("private, max-age=86400"),
        "Content-Disposition": "inline",
        "Content-Security-Policy": USER_CONTENT_CSP,
    }
    return StreamingResponse(blob.body, headers=headers, media_type=thumb.content_type)
