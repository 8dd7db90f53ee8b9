"""Request building and response parsing shared by ``Client`` and ``AsyncClient``.

Nothing here does I/O: each client sends what these functions describe and hands the
answers back to them, so both speak the API the same way.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from uploads_api import __version__
from uploads_api.client.errors import IntegrityError, error_from_response
from uploads_api.client.models import FileRecord, HashCheck, TaskRecord

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "UPLOADS_URL"
API_KEY_ENV = "UPLOADS_API_KEY"
FILES = "/v1/files"
TASKS = "/v1/tasks"
# The server refuses longer holds and longer hash lists.
MAX_SERVER_WAIT = 60.0
CHECK_BATCH = 10_000
MAX_PAGE = 1000
# A long poll is held by the server for up to its wait; the read timeout must outlast it.
LONG_POLL_MARGIN = 30.0
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0, pool=None)
USER_AGENT = f"uploads-api-client/{__version__}"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def resolve_url(url: str | None) -> str:
    return (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def resolve_api_key(api_key: str | None) -> str | None:
    return api_key or os.environ.get(API_KEY_ENV) or None


def default_headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def file_path(file_id: str, *rest: str) -> str:
    return "/".join([FILES, quote(file_id, safe=""), *rest])


# Concrete routes under /v1/files: a PUT there is not an upload (the server answers 405),
# so a file of such a name goes as a one-part multipart POST instead.
RESERVED_NAMES = frozenset({"check"})
_BOUNDARY = "uploads-api-client-boundary-7b1f0c"
FORM_CONTENT_TYPE = f"multipart/form-data; boundary={_BOUNDARY}"
# After the last file's bytes: the end of its part, and of the body.
FORM_END = f"\r\n--{_BOUNDARY}--\r\n".encode()


@dataclass(frozen=True)
class UploadRequest:
    """How one file is sent: ``PUT`` of the raw bytes, or (``form``) a multipart ``POST``
    whose body is ``head`` + the bytes + ``tail``."""

    method: str
    path: str
    head: bytes = b""
    tail: bytes = b""

    @property
    def form(self) -> bool:
        return self.method == "POST"


def file_name(filename: str) -> str:
    """The name sent for ``filename``: the server keeps only the last path segment, and a
    ``/`` (even as ``%2F``) would leave the route, so only the last segment is sent."""
    name = re.split(r"[/\\]", filename)[-1]
    if name in ("", ".", ".."):
        raise ValueError(f"{filename!r} is not a usable file name")
    return name


def upload_request(filename: str, sha256: str | None) -> UploadRequest:
    """The request for ``filename`` (see ``file_name``)."""
    name = file_name(filename)
    if name not in RESERVED_NAMES:
        return UploadRequest("PUT", f"{FILES}/{quote(name, safe='')}")
    return UploadRequest("POST", FILES, form_file_head(name, sha256), FORM_END)


def form_file_head(name: str, sha256: str | None) -> bytes:
    """A file part up to its bytes, after the ``sha256`` field that checks it, if known.
    ``name`` is one ``file_name`` gave, without control characters; a quote in it is
    escaped as python-multipart (the server's parser) reads it."""
    head = b"" if sha256 is None else _form_part('name="sha256"', sha256.encode())
    quoted = name.replace('"', '\\"')
    return head + _form_part(f'name="file"; filename="{quoted}"', b"")[: -len(b"\r\n")]


def _form_part(disposition: str, value: bytes) -> bytes:
    """One part with its closing line break; the file part drops that break and is
    followed by the bytes instead."""
    head = f"--{_BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n"
    if "filename=" in disposition:
        head += "Content-Type: application/octet-stream\r\n"
    return head.encode() + b"\r\n" + value + b"\r\n"


def framed(request: UploadRequest, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The body of ``request`` around the file's chunks."""
    if request.head:
        yield request.head
    yield from chunks
    if request.tail:
        yield request.tail


async def framed_async(
    request: UploadRequest, chunks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """``framed`` for an async body."""
    if request.head:
        yield request.head
    async for chunk in chunks:
        yield chunk
    if request.tail:
        yield request.tail


def upload_headers(request: UploadRequest, size: int | None, sha256: str | None) -> dict[str, str]:
    if request.form:
        headers = {"Content-Type": FORM_CONTENT_TYPE}
        if size is not None:
            headers["Content-Length"] = str(len(request.head) + size + len(request.tail))
        return headers
    headers = {"Content-Type": "application/octet-stream"}
    if size is not None:
        # With a length the server can refuse an oversized file before reading it.
        headers["Content-Length"] = str(size)
    if sha256 is not None:
        # RFC 9530: the server checks the bytes against it before committing anything.
        digest = base64.b64encode(bytes.fromhex(sha256)).decode()
        headers["Content-Digest"] = f"sha-256=:{digest}:"
    return headers


def parse_upload(request: UploadRequest, response: httpx.Response) -> FileRecord:
    body = ensure_ok(response).json()
    return FileRecord.from_json(body["files"][0] if request.form else body)


def get_params(wait: float | None) -> dict[str, Any]:
    if wait is None:
        return {}
    if not 0 <= wait <= MAX_SERVER_WAIT:
        raise ValueError(f"wait must be between 0 and {MAX_SERVER_WAIT:g} s; use wait() for more")
    return {"wait": wait}


def get_timeout(timeout: httpx.Timeout, wait: float | None) -> httpx.Timeout:
    if not wait:
        return timeout
    read = wait + LONG_POLL_MARGIN
    return httpx.Timeout(
        connect=timeout.connect,
        read=None if timeout.read is None else max(read, timeout.read),
        write=timeout.write,
        pool=timeout.pool,
    )


def page_size(limit: int | None, seen: int, size: int) -> int:
    wanted = size if limit is None else min(size, limit - seen)
    return max(1, min(MAX_PAGE, wanted))


def list_params(
    status: str | None, sha256: str | None, size: int, cursor: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": size}
    if status is not None:
        params["status"] = status
    if sha256 is not None:
        params["sha256"] = sha256
    if cursor is not None:
        params["cursor"] = cursor
    return params


def tasks_params(state: str | None, size: int, cursor: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": size}
    if state is not None:
        params["state"] = state
    if cursor is not None:
        params["cursor"] = cursor
    return params


def check_batches(hashes: Iterable[str]) -> Iterator[list[str]]:
    """Unique lower-case hashes in batches the server accepts; a malformed one is refused
    here, with its value, rather than as one anonymous 422 for the whole batch."""
    unique: dict[str, None] = {}
    for value in hashes:
        if not _HEX64.match(value):
            raise ValueError(f"{value!r} is not a sha256 (64 hex digits)")
        unique[value.lower()] = None
    ordered = list(unique)
    for start in range(0, len(ordered), CHECK_BATCH):
        yield ordered[start : start + CHECK_BATCH]


def ensure_ok(response: httpx.Response) -> httpx.Response:
    """The response itself, or the ``ApiError`` it stands for. Its body must be read."""
    if not response.is_success:
        raise error_from_response(response)
    return response


def parse_record(response: httpx.Response) -> FileRecord:
    return FileRecord.from_json(ensure_ok(response).json())


def parse_files_page(response: httpx.Response) -> tuple[list[FileRecord], str | None]:
    body = ensure_ok(response).json()
    return [FileRecord.from_json(item) for item in body["files"]], body.get("next_cursor")


def parse_tasks_page(response: httpx.Response) -> tuple[list[TaskRecord], int | None]:
    body = ensure_ok(response).json()
    return [TaskRecord.from_json(item) for item in body["tasks"]], body.get("next_cursor")


def parse_check(responses: Iterable[httpx.Response]) -> HashCheck:
    present: list[str] = []
    missing: list[str] = []
    for response in responses:
        body = ensure_ok(response).json()
        present += body["present"]
        missing += body["missing"]
    return HashCheck(present=tuple(present), missing=tuple(missing))


def verify_upload(record: FileRecord, sent: int, sha256: str | None) -> FileRecord:
    """The record, once it describes exactly the bytes that were sent. A server that strips
    metadata stores other bytes: then ``received_sha256`` is what was sent."""
    received = record.received_sha256 or record.sha256
    stripped = received != record.sha256
    if (sha256 is not None and received != sha256) or (not stripped and record.size != sent):
        raise IntegrityError(
            f"the server received {record.size} bytes with sha256 {received} "
            f"but {sent} bytes with sha256 {sha256} were sent (file id {record.id})"
        )
    return record


def etag_sha256(response: httpx.Response) -> str | None:
    """The sha256 a download should have: the server's ETag is the quoted hash."""
    etag = response.headers.get("etag", "").strip('"')
    return etag.lower() if _HEX64.match(etag) else None


def check_download(expected: str | None, actual: str, file_id: str) -> None:
    if expected is not None and expected != actual:
        raise IntegrityError(f"file {file_id} arrived with sha256 {actual}, not {expected}")


def http_options(
    url: str, api_key: str | None, timeout: httpx.Timeout, max_connections: int
) -> dict[str, Any]:
    """The httpx client settings the sync and the async client share."""
    return {
        "base_url": url,
        "headers": default_headers(resolve_api_key(api_key)),
        "timeout": timeout,
        "limits": httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    }
