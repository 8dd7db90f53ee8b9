"""The one place errors become HTTP: each error's status and headers, rendered as RFC 9457
``application/problem+json``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from uploads_api import errors
from uploads_api.errors import ServiceUnavailable, UploadsError

PROBLEM_JSON = "application/problem+json"
# Each code has a page here (api/problem_pages.py): what it means, what to do.
PROBLEM_TYPE_BASE = "/problems/"

# Each error class's status; a subclass takes its nearest listed ancestor's.
STATUS: dict[type[UploadsError], int] = {
    errors.BadRequest: 400,
    errors.ClientDisconnected: 400,
    errors.Unauthorized: 401,
    errors.KeysRequired: 403,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.DirectUploadBusy: 409,
    errors.ThumbnailNotReady: 409,
    errors.IdempotencyKeyInProgress: 409,
    errors.OffsetMismatch: 409,
    errors.UploadExpired: 410,
    errors.TusVersionUnsupported: 412,
    errors.UploadLocked: 423,
    errors.TusChecksumMismatch: 460,
    errors.InvalidParts: 409,
    errors.RequestTimeout: 408,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.IdempotentFilesDeleted: 410,
    errors.RangeNotSatisfiable: 416,
    errors.NoFiles: 422,
    errors.IdempotencyKeyReused: 422,
    errors.WebhookTargetRefused: 422,
    errors.NoImage: 422,
    errors.SizeMismatch: 422,
    errors.UndecodableImage: 422,
    errors.TooManyUploads: 429,
    errors.ServiceUnavailable: 503,
    errors.InsufficientStorage: 507,
}

# Problems for errors raised by the framework itself (routing, methods, body parsing).
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

log = logging.getLogger(__name__)


def over_setting(location: tuple[str, ...], limit: int, value: int) -> RequestValidationError:
    """A value over a bound that a setting gives (not the model): refused as FastAPI refuses
    a bound in the model, so clients see one form of 422 for both."""
    return RequestValidationError(
        [
            {
                "type": "less_than_equal",
                "loc": location,
                "msg": f"Input should be less than or equal to {limit}",
                "input": value,
                "ctx": {"le": limit},
            }
        ]
    )


def _status_of(error_class: type[UploadsError]) -> int:
    for cls in error_class.__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def http_status(error: UploadsError) -> int:
    return _status_of(type(error))


@dataclass(frozen=True)
class ProblemType:
    code: str
    status: int | None  # None: the status varies (``http-error``)
    title: str


def _error_classes(root: type[UploadsError] = UploadsError) -> list[type[UploadsError]]:
    found = [root]
    for sub in root.__subclasses__():
        found += _error_classes(sub)
    return found


# Every code a problem can carry: the service's errors, then the framework's own.
PROBLEM_TYPES: dict[str, ProblemType] = {}
for _cls in _error_classes():
    # A subclass that only changes the status (tus's 460) keeps its parent's entry.
    PROBLEM_TYPES.setdefault(_cls.code, ProblemType(_cls.code, _status_of(_cls), _cls.title))
for _status, (_code, _title) in _HTTP_CODES.items():
    PROBLEM_TYPES.setdefault(_code, ProblemType(_code, _status, _title))
PROBLEM_TYPES["http-error"] = ProblemType("http-error", None, "HTTP error")


def http_headers(error: UploadsError) -> dict[str, str]:
    """Response headers the error calls for."""
    if isinstance(error, errors.Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="uploads-api"'}
    if isinstance(error, errors.RangeNotSatisfiable):
        return {"Content-Range": f"bytes */{error.extra.get('size', '*')}"}
    if isinstance(error, errors.TusVersionUnsupported):
        return {"Tus-Version": "1.0.0"}
    if isinstance(error, errors.OffsetMismatch):
        return {"Upload-Offset": str(error.extra.get("offset", 0))}
    if isinstance(error, errors.TooManyUploads):
        return {"Retry-After": str(error.extra.get("retry_after", 1))}
    if isinstance(error, errors.IdempotencyKeyInProgress):
        # The other request may end any moment: ask again soon.
        return {"Retry-After": "1"}
    return {}


def problem_of(error: UploadsError, instance: str | None = None) -> dict[str, Any]:
    problem: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": http_status(error),
        "detail": error.detail,
        "code": error.code,
    }
    if instance:
        problem["instance"] = instance
    problem.update(error.extra)
    return problem


def problem_response(
    status: int, problem: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(problem, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def framework_problem(status: int, detail: str, instance: str) -> JSONResponse:
    """A problem for an HTTP error the framework raised (no route, no such method...)."""
    code, title = _HTTP_CODES.get(status, ("http-error", "HTTP error"))
    problem = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": instance,
    }
    return problem_response(status, problem)


def error_response(error: UploadsError, instance: str | None = None) -> JSONResponse:
    return problem_response(http_status(error), problem_of(error, instance), http_headers(error))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadsError)
    async def _uploads_error(request: Request, exc: UploadsError) -> JSONResponse:
        response = error_response(exc, request.url.path)
        if response.status_code >= 500:
            log.warning("request failed: %s", exc.detail)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = framework_problem(exc.status_code, str(exc.detail), request.url.path)
        response.headers.update(exc.headers or {})
        return response

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

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Locked past the busy timeout, or unreachable: a retry may well succeed, and an
        # upload cut short by it has left nothing behind (its blobs were removed).
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        error = ServiceUnavailable(
            "the database is not available right now; nothing was changed, try again"
        )
        return error_response(error, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(UploadsError("an unexpected error occurred"), request.url.path)
