"""Every error the API can answer with, and its RFC 9457 ``application/problem+json`` rendering.

The tree::

    UploadsError                      stable ``code``, HTTP ``status``, readable ``detail``
    ├── BadRequest (400)
    │   ├── MalformedMultipart        missing boundary, bad part headers, truncated body
    │   └── TooManyParts              more files or fields than allowed
    ├── NotFound (404)                unknown file or thumbnail (also another owner's)
    ├── PayloadTooLarge (413)         a file over the size limit
    │   └── FieldTooLarge             a form field over its limit
    ├── UnsupportedMediaType (415)    a POST body that is not multipart/form-data
    ├── RangeNotSatisfiable (416)
    ├── NoFiles (422)                 a request that carried no file
    ├── ClientDisconnected (400)      the client went away; the answer reaches nobody
    ├── ServiceUnavailable (503)      the database is not reachable
    └── InsufficientStorage (507)     the disk is full

Lower-level errors are translated where they are caught, with ``raise ... from exc``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://uploads-api.dev/problems/"

log = logging.getLogger(__name__)


class UploadsError(Exception):
    status: int = 500
    code: str = "internal-error"
    title: str = "Internal server error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def headers(self) -> dict[str, str]:
        """Extra response headers this error calls for."""
        return {}

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            problem["instance"] = instance
        problem.update(self.extra)
        return problem


class BadRequest(UploadsError):
    status, code, title = 400, "bad-request", "Bad request"


class MalformedMultipart(BadRequest):
    code, title = "malformed-multipart", "Malformed multipart body"


class TooManyParts(BadRequest):
    code, title = "too-many-parts", "Too many parts"


class NotFound(UploadsError):
    status, code, title = 404, "not-found", "Not found"


class PayloadTooLarge(UploadsError):
    status, code, title = 413, "file-too-large", "File too large"


class FieldTooLarge(PayloadTooLarge):
    code, title = "field-too-large", "Form field too large"


class UnsupportedMediaType(UploadsError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class NoFiles(UploadsError):
    status, code, title = 422, "no-files", "No file in request"


class RangeNotSatisfiable(UploadsError):
    status, code, title = 416, "range-not-satisfiable", "Range not satisfiable"

    def headers(self) -> dict[str, str]:
        return {"Content-Range": f"bytes */{self.extra.get('size', '*')}"}


class InsufficientStorage(UploadsError):
    status, code, title = 507, "insufficient-storage", "Insufficient storage"


class ServiceUnavailable(UploadsError):
    status, code, title = 503, "service-unavailable", "Service unavailable"


class ClientDisconnected(UploadsError):
    """The client closed the connection mid-request; there is nobody to answer."""

    status, code, title = 400, "client-disconnected", "Client disconnected"


_HTTP_CODES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    416: ("range-not-satisfiable", "Range not satisfiable"),
    422: ("validation-error", "Invalid request"),
}


def problem_response(
    status: int, problem: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(problem, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadsError)
    async def _uploads_error(request: Request, exc: UploadsError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed: %s", exc.detail)
        return problem_response(exc.status, exc.to_problem(request.url.path), exc.headers())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _HTTP_CODES.get(exc.status_code, ("http-error", "HTTP error"))
        problem = {
            "type": PROBLEM_TYPE_BASE + code,
            "title": title,
            "status": exc.status_code,
            "detail": str(exc.detail),
            "code": code,
            "instance": request.url.path,
        }
        return problem_response(exc.status_code, problem, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        problem = {
            "type": PROBLEM_TYPE_BASE + "validation-error",
            "title": "Invalid request",
            "status": 422,
            "detail": "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors),
            "code": "validation-error",
            "instance": request.url.path,
            "errors": errors,
        }
        return problem_response(422, problem)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        problem = UploadsError("an unexpected error occurred").to_problem(request.url.path)
        return problem_response(500, problem)
