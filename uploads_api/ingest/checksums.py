"""Client checksums: RFC 9530 ``Content-Digest`` on raw bodies, a ``sha256`` form field
before a multipart file part. Both are checked before anything is committed."""

from __future__ import annotations

import base64
import binascii
import re

from uploads_api.errors import BadRequest

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
# sha-256=:<base64>: as one member of the dictionary (RFC 8941 byte sequence).
_DIGEST = re.compile(r"(?:^|,)\s*sha-256\s*=\s*:([A-Za-z0-9+/=]+):", re.IGNORECASE)


def parse_sha256_hex(value: str) -> str:
    value = value.strip()
    if not _HEX.match(value):
        raise BadRequest("the sha256 field must be 64 hexadecimal digits")
    return value.lower()


def parse_content_digest(header: str | None) -> str | None:
    """The sha-256 of a ``Content-Digest`` header as hex, ``None`` if it names no sha-256."""
    if not header:
        return None
    match = _DIGEST.search(header)
    if match is None:
        return None
    try:
        raw = base64.b64decode(match.group(1), validate=True)
    except binascii.Error as exc:
        raise BadRequest("Content-Digest sha-256 is not valid base64") from exc
    if len(raw) != 32:
        raise BadRequest("Content-Digest sha-256 must be 32 bytes")
    return raw.hex()
