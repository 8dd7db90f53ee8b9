"""What the client raises.

The tree::

    UploadsClientError                 anything this client raises on purpose
    ├── ApiError                       the server answered with an error (problem+json)
    │   ├── BadRequest (400)           also ``checksum-mismatch``, ``malformed-multipart``
    │   ├── Unauthorized (401)         no API key, or an unknown or revoked one
    │   ├── Forbidden (403)
    │   ├── NotFound (404)
    │   ├── PayloadTooLarge (413)      ``file-too-large``, ``quota-exceeded``
    │   ├── ValidationError (422)      a parameter the server refused
    │   ├── TooManyRequests (429)      carries ``retry_after``
    │   └── ServerError (5xx)
    ├── TransportError                 no answer: refused, reset, timed out
    ├── IntegrityError                 bytes changed between here and there
    └── ProcessingTimeout              ``wait()`` ran out of time (also a ``TimeoutError``)

Match on ``ApiError.code`` (stable), not on ``detail`` (for people). httpx errors are
translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any

import httpx


class UploadsClientError(Exception):
    """Base of every error the client raises on purpose."""


class ApiError(UploadsClientError):
    """The server answered with a status of 400 or more.

    ``problem`` is the whole problem+json document (empty when the body was something
    else, e.g. a proxy's HTML page); ``code`` is its stable ``code`` field.
    """

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        problem: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}" if detail else f"{status} {code}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.problem = problem
        self.headers = headers or {}


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class PayloadTooLarge(ApiError):
    pass


class ValidationError(ApiError):
    pass


class TooManyRequests(ApiError):
    @property
    def retry_after(self) -> str | None:
        """The raw ``Retry-After`` header, if the server sent one."""
        return self.headers.get("retry-after")


class ServerError(ApiError):
    pass


class TransportError(UploadsClientError):
    """The request got no answer: connection refused or reset, or a timeout."""

    @property
    def unreachable(self) -> bool:
        """True when no connection could be made at all (nothing was sent)."""
        return isinstance(self.__cause__, httpx.ConnectError | httpx.ConnectTimeout)


class IntegrityError(UploadsClientError):
    """The bytes the server stored or sent are not the bytes expected (sha256 differs),
    or a local file changed while it was being uploaded."""


class ProcessingTimeout(UploadsClientError, TimeoutError):
    """``wait()`` gave up; ``record`` is the file as last seen (still ``processing``)."""

    def __init__(self, message: str, record: Any) -> None:
        super().__init__(message)
        self.record = record


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    413: PayloadTooLarge,
    422: ValidationError,
    429: TooManyRequests,
}


def transport_error(exc: httpx.TransportError) -> TransportError:
    try:
        where = f"{exc.request.method} {exc.request.url}"
    except RuntimeError:
        where = "the request"
    return TransportError(f"{where} failed: {str(exc) or type(exc).__name__}")


def error_from_response(response: httpx.Response) -> ApiError:
    """The ``ApiError`` for a response that is not a 2xx. The body must have been read."""
    status = response.status_code
    problem: dict[str, Any] = {}
    if "json" in response.headers.get("content-type", ""):
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            problem = parsed
    code = str(problem.get("code") or f"http-{status}")
    title = str(problem.get("title") or response.reason_phrase)
    detail = str(problem.get("detail") or "")
    if response.is_redirect and not detail:
        # Not followed: a redirected PUT would lose its body. Say where to point instead.
        detail = f"the server redirects to {response.headers.get('location')}; use that URL"
    kind = ServerError if status >= 500 else _BY_STATUS.get(status, ApiError)
    return kind(status, code, title, detail, problem, dict(response.headers))
