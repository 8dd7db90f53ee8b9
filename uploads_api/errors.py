"""Every error the API can answer with, and its RFC 9457 ``application/problem+json`` rendering.

The tree::

    UploadsError                      stable ``code``, HTTP ``status``, readable ``detail``
    ├── BadRequest (400)
    │   ├── MalformedMultipart        missing boundary, bad part headers, truncated body
    │   ├── TooManyParts              more files or fields than allowed
    │   └── ChecksumMismatch          the bytes do not match the client's sha256
    ├── Unauthorized (401)            no key, or an unknown or revoked one
    ├── NotFound (404)                unknown file or thumbnail (also another owner's)
    ├── RequestTimeout (408)          the body stalled for UPLOADS_BODY_TIMEOUT
    ├── PayloadTooLarge (413)         a file over the size limit
    │   ├── FieldTooLarge             a form field over its limit
    │   └── QuotaExceeded             the owner's byte or file quota
    ├── UnsupportedMediaType (415)    not multipart/form-data; a type UPLOADS_ALLOWED_TYPES refuses
    ├── RangeNotSatisfiable (416)
    ├── NoFiles (422)                 a request that carried no file
    ├── TooManyUploads (429)          over the per-key concurrent upload cap
    ├── ClientDisconnected (400)      the client went away; the answer reaches nobody
    ├── ServiceUnavailable (503)      the database is not reachable or locked
    └── InsufficientStorage (507)     the disk is full

Lower-level errors are translated where they are caught, with ``raise ... from exc``.
``api/problems.py`` renders them; nothing here knows about the web framework.
"""

from __future__ import annotations

from typing import Any

PROBLEM_TYPE_BASE = "https://uploads-api.dev/problems/"


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


class Unauthorized(UploadsError):
    status, code, title = 401, "unauthorized", "API key required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="uploads-api"'}


class NotFound(UploadsError):
    status, code, title = 404, "not-found", "Not found"


class PayloadTooLarge(UploadsError):
    status, code, title = 413, "file-too-large", "File too large"


class FieldTooLarge(PayloadTooLarge):
    code, title = "field-too-large", "Form field too large"


class QuotaExceeded(PayloadTooLarge):
    code, title = "quota-exceeded", "Quota exceeded"


class UnsupportedMediaType(UploadsError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class NoFiles(UploadsError):
    status, code, title = 422, "no-files", "No file in request"


class RangeNotSatisfiable(UploadsError):
    status, code, title = 416, "range-not-satisfiable", "Range not satisfiable"

    def headers(self) -> dict[str, str]:
        return {"Content-Range": f"bytes */{self.extra.get('size', '*')}"}


class TooManyUploads(UploadsError):
    status, code, title = 429, "too-many-uploads", "Too many concurrent uploads"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.extra.get("retry_after", 1))}


class RequestTimeout(UploadsError):
    status, code, title = 408, "body-timeout", "Request body timeout"


class ChecksumMismatch(BadRequest):
    code, title = "checksum-mismatch", "Checksum mismatch"


class InsufficientStorage(UploadsError):
    status, code, title = 507, "insufficient-storage", "Insufficient storage"


class ServiceUnavailable(UploadsError):
    status, code, title = 503, "service-unavailable", "Service unavailable"


class ClientDisconnected(UploadsError):
    """The client closed the connection mid-request; there is nobody to answer."""

    status, code, title = 400, "client-disconnected", "Client disconnected"
