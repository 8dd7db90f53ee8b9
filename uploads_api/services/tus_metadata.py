"""``Upload-Metadata`` (tus): ``key base64value`` pairs, comma-separated."""

from __future__ import annotations

import base64
import binascii

from uploads_api.errors import InvalidTusRequest


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata``: ``key base64value`` pairs, comma-separated (a value may be
    absent). Keys this server reads: ``filename``, ``filetype``, ``sha256`` (hex or
    base64, kept as hex)."""
    found: dict[str, str] = {}
    for item in (header or "").split(","):
        if not item.strip():
            continue
        key, _, encoded = item.strip().partition(" ")
        if not key or " " in encoded.strip() or key in found:
            raise InvalidTusRequest(f"Upload-Metadata item {item.strip()!r} is not 'key base64'")
        try:
            value = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidTusRequest(f"Upload-Metadata value of {key!r} is not base64") from exc
        found[key] = value
    if "sha256" in found:
        found["sha256"] = _hex_sha256(found["sha256"])
    return found


def _hex_sha256(value: str) -> str:
    text = value.strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise InvalidTusRequest("Upload-Metadata sha256 is neither 64 hex digits nor base64")
    return raw.hex()
