"""What tus asks of every exchange under ``/v1/tus/``, before and after the routes:

- ``OPTIONS`` answers the server's tus capabilities, without a key;
- ``X-HTTP-Method-Override`` turns a ``POST`` into the ``PATCH`` or ``DELETE`` it names
  (for clients behind proxies that only pass GET and POST);
- any other request must say ``Tus-Resumable: 1.0.0`` (412 otherwise; a ``GET`` of the
  listing, which is ours and not tus's, need not);
- every response carries ``Tus-Resumable: 1.0.0``;
- and, though tus does not ask it, an answer given before the request's body was read to
  its end closes the connection (``_Body`` says why).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from uploads_api.api.problems import error_response
from uploads_api.errors import TusVersionUnsupported

PREFIX = "/v1/tus"
VERSION = "1.0.0"
EXTENSIONS = (
    "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,"
    "concatenation"
)
CHECKSUM_ALGORITHMS = "sha1,sha256,md5"
# What a browser page on another origin needs to speak tus (with UPLOADS_CORS_ORIGINS).
REQUEST_HEADERS = (
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Checksum",
    "Upload-Concat",
    "X-HTTP-Method-Override",
)
RESPONSE_HEADERS = (
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Upload-Concat",
    "Location",
    "File-Id",
    "Link",
)
_OVERRIDABLE = {"PATCH", "DELETE"}


class TusProtocol:
    def __init__(self, app: ASGIApp, *, max_size: int) -> None:
        self.app = app
        self.max_size = max_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method = scope["method"]
        if method == "OPTIONS":
            await self._options(scope, receive, send)
            return
        override = headers.get("x-http-method-override", "").upper()
        if method == "POST" and override in _OVERRIDABLE:
            scope = {**scope, "method": override}
        if scope["method"] != "GET" and headers.get("tus-resumable") != VERSION:
            error = TusVersionUnsupported(
                f"this server speaks tus {VERSION}; send Tus-Resumable: {VERSION}"
            )
            body = _Body(receive, headers)
            await error_response(error, scope["path"])(scope, body.receive, body.stamped(send))
            return
        body = _Body(receive, headers)
        await self.app(scope, body.receive, body.stamped(send))

    async def _options(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = Response(
            status_code=204,
            headers={
                "Tus-Resumable": VERSION,
                "Tus-Version": VERSION,
                "Tus-Extension": EXTENSIONS,
                "Tus-Max-Size": str(self.max_size),
                "Tus-Checksum-Algorithm": CHECKSUM_ALGORITHMS,
                "Allow": "GET, HEAD, POST, PATCH, DELETE, OPTIONS",
            },
        )
        await response(scope, receive, send)


class _Body:
    """Whether the request's body was read to its end before the answer began.

    A refusal (409, 423, 429...) often comes before the body is read. The connection is
    then closed after the answer: kept open, it would wait for the rest of a body that
    some clients stop sending once they have their answer (Node's http, and so
    tus-js-client, does), and neither side would ever let go of it.
    """

    def __init__(self, receive: Receive, headers: Headers) -> None:
        self._receive = receive
        length = headers.get("content-length")
        self.unread = "transfer-encoding" in headers or (length is not None and length != "0")

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.unread = False
        return message

    def stamped(self, send: Send) -> Send:
        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"tus-resumable"]
                headers.append((b"tus-resumable", VERSION.encode()))
                if self.unread:
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        return send_stamped
