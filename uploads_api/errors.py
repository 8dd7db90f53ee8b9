"""Every error the service can report, each with a stable ``code``, a ``title`` and a
readable ``detail``. Nothing here knows about HTTP: ``api/problems.py`` alone maps each
error to its status and headers and renders it as RFC 9457 ``application/problem+json``.

The tree::

    UploadsError                      stable ``code``, ``title``, readable ``detail``
    ├── BadRequest
    │   ├── MalformedMultipart        missing boundary, bad part headers, truncated body
    │   ├── TooManyParts              more files or fields than allowed
    │   ├── ChecksumMismatch          the bytes do not match the client's sha256
    │   │   └── TusChecksumMismatch   the same, on a resumable upload (tus answers 460)
    │   ├── ChecksumAlgorithmUnsupported  a tus Upload-Checksum algorithm not offered
    │   ├── InvalidTusRequest         a tus header missing or malformed
    │   ├── InvalidVariantSpec        a variant spec that means nothing (the reason in detail)
    │   ├── VariantSpecNotCanonical   a valid variant spec, not in canonical form
    │   └── VariantTooLarge           a variant above UPLOADS_VARIANT_MAX_SIZE
    ├── Unauthorized                  no key, or an unknown or revoked one
    ├── KeysRequired                  an open server (no key yet) reached on a public address
    ├── Forbidden                     a key that is not an admin's, on an admin-only route
    │   ├── VariantNotAllowed         not one of UPLOADS_VARIANT_PRESETS, when those are set
    │   ├── InvalidLink               a signed link that is not genuine, or not for this request
    │   └── LinkExpired               a genuine signed link past its expiry
    ├── NotFound                      unknown file or thumbnail (also another owner's)
    │   └── DirectUploadsUnavailable  direct uploads off, or storage that is not S3
    ├── DirectUploadBusy              another request is completing this direct upload
    ├── ThumbnailNotReady             a link to a thumbnail size the file does not have (yet)
    ├── IdempotencyKeyInProgress      another request with this Idempotency-Key is running
    ├── RequestTimeout                the body stalled for UPLOADS_BODY_TIMEOUT
    ├── OffsetMismatch                a tus PATCH not at the upload's offset
    ├── UploadLocked                  another request is writing this resumable upload
    ├── UploadExpired                 a resumable upload past its expiry
    ├── TusVersionUnsupported         a Tus-Resumable version other than 1.0.0
    ├── PayloadTooLarge               a file over the size limit
    │   ├── FieldTooLarge             a form field over its limit
    │   └── QuotaExceeded             the owner's byte or file quota
    ├── UnsupportedMediaType          not multipart/form-data; a type UPLOADS_ALLOWED_TYPES refuses
    ├── RangeNotSatisfiable
    ├── IdempotentFilesDeleted        a replay whose first answer's files were deleted since
    ├── NoFiles                       a request that carried no file
    ├── IdempotencyKeyReused          an Idempotency-Key used before for another request
    ├── WebhookTargetRefused          a webhook URL the server will not send to
    ├── NoImage                       a file with no image to make variants from
    ├── InvalidParts                  a direct upload's part list that storage refuses
    ├── SizeMismatch                  a direct upload's parts not adding up to its size
    ├── UndecodableImage              an image the media pool refuses or cannot decode
    ├── TooManyUploads                over the per-key concurrent upload cap
    ├── ClientDisconnected            the client went away; the answer reaches nobody
    ├── ServiceUnavailable            the database is not reachable or locked
    └── InsufficientStorage           the disk is full

Lower-level errors are translated where they are caught, with ``raise ... from exc``.
Keyword arguments become extra members of the problem (``limit``, ``size``...).
"""

from __future__ import annotations

from typing import Any


class UploadsError(Exception):
    code: str = "internal-error"
    title: str = "Internal server error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(UploadsError):
    code, title = "bad-request", "Bad request"


class MalformedMultipart(BadRequest):
    code, title = "malformed-multipart", "Malformed multipart body"


class TooManyParts(BadRequest):
    code, title = "too-many-parts", "Too many parts"


class ChecksumMismatch(BadRequest):
    code, title = "checksum-mismatch", "Checksum mismatch"


class InvalidVariantSpec(BadRequest):
    code, title = "invalid-variant-spec", "Invalid variant spec"


class TusChecksumMismatch(ChecksumMismatch):
    """A tus chunk or a whole resumable upload whose checksum does not match; tus answers
    it with 460, under the same code."""


class ChecksumAlgorithmUnsupported(BadRequest):
    code, title = "checksum-algorithm-unsupported", "Checksum algorithm not supported"


class InvalidTusRequest(BadRequest):
    code, title = "invalid-tus-request", "Invalid tus request"


class VariantSpecNotCanonical(BadRequest):
    """Extra member ``canonical``: how to write the spec."""

    code, title = "variant-spec-not-canonical", "Variant spec not in canonical form"


class VariantTooLarge(BadRequest):
    code, title = "variant-too-large", "Variant too large"


class Unauthorized(UploadsError):
    code, title = "unauthorized", "API key required"


class KeysRequired(UploadsError):
    code, title = "keys-required", "API keys required on a public address"


class Forbidden(UploadsError):
    code, title = "forbidden", "Forbidden"


class VariantNotAllowed(Forbidden):
    code, title = "variant-not-allowed", "Variant not allowed"


class InvalidLink(Forbidden):
    code, title = "invalid-link", "Invalid link"


class LinkExpired(Forbidden):
    code, title = "link-expired", "Link expired"


class NotFound(UploadsError):
    code, title = "not-found", "Not found"


class DirectUploadsUnavailable(NotFound):
    code, title = "direct-uploads-unavailable", "Direct uploads unavailable"


class DirectUploadBusy(UploadsError):
    code, title = "direct-upload-busy", "Direct upload being completed"


class IdempotencyKeyInProgress(UploadsError):
    code, title = "idempotency-key-in-progress", "Idempotency key in use"


class ThumbnailNotReady(UploadsError):
    code, title = "thumbnail-not-ready", "Thumbnail not ready"


class RequestTimeout(UploadsError):
    code, title = "body-timeout", "Request body timeout"


class OffsetMismatch(UploadsError):
    """Extra member ``offset``: where the upload stands."""

    code, title = "offset-mismatch", "Upload offset mismatch"


class UploadLocked(UploadsError):
    code, title = "upload-locked", "Upload locked"


class UploadExpired(UploadsError):
    code, title = "upload-expired", "Upload expired"


class TusVersionUnsupported(UploadsError):
    code, title = "tus-version-unsupported", "tus version not supported"


class PayloadTooLarge(UploadsError):
    code, title = "file-too-large", "File too large"


class FieldTooLarge(PayloadTooLarge):
    code, title = "field-too-large", "Form field too large"


class QuotaExceeded(PayloadTooLarge):
    code, title = "quota-exceeded", "Quota exceeded"


class UnsupportedMediaType(UploadsError):
    code, title = "unsupported-media-type", "Unsupported media type"


class RangeNotSatisfiable(UploadsError):
    code, title = "range-not-satisfiable", "Range not satisfiable"


class IdempotentFilesDeleted(UploadsError):
    code, title = "idempotent-files-deleted", "Files of the first request deleted"


class NoFiles(UploadsError):
    code, title = "no-files", "No file in request"


class IdempotencyKeyReused(UploadsError):
    code, title = "idempotency-key-reused", "Idempotency key reused"


class WebhookTargetRefused(UploadsError):
    code, title = "webhook-target-refused", "Webhook target refused"


class NoImage(UploadsError):
    code, title = "no-image", "No image to make variants from"


class InvalidParts(UploadsError):
    code, title = "invalid-parts", "Invalid parts"


class SizeMismatch(UploadsError):
    code, title = "size-mismatch", "Size mismatch"


class UndecodableImage(UploadsError):
    code, title = "undecodable-image", "Image cannot be decoded"


class TooManyUploads(UploadsError):
    code, title = "too-many-uploads", "Too many concurrent uploads"


class ClientDisconnected(UploadsError):
    """The client closed the connection mid-request; there is nobody to answer."""

    code, title = "client-disconnected", "Client disconnected"


class ServiceUnavailable(UploadsError):
    code, title = "service-unavailable", "Service unavailable"


class InsufficientStorage(UploadsError):
    code, title = "insufficient-storage", "Insufficient storage"
