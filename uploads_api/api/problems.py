"""Rendering every error as RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from uploads_api.errors import PROBLEM_TYPE_BASE, ServiceUnavailable, UploadsError

PROBLEM_JSON = "application/problem+json"


def problem_doc(description: str) -> dict[str, Any]:
    """An OpenAPI response entry for a problem+json answer."""
    return {"description": description, "content": {PROBLEM_JSON: {}}}


# Every API route can answer these; validation errors are problem+json here too.
COMMON_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("API key missing or not valid (once any key exists)"),
    422: problem_doc("A parameter or body that does not validate"),
}

log = logging.getLogger(__name__)


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

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Locked past the busy timeout, or unreachable: a retry may well succeed.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        error = ServiceUnavailable("the database is not available right now; try again")
        return problem_response(503, error.to_problem(request.url.path), error.headers())

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        problem = UploadsError("an unexpected error occurred").to_problem(request.url.path)
        return problem_response(500, problem)
