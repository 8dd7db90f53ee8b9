"""Which sniffed types are handed to a decoder. Everything else is stored as an opaque file."""

from __future__ import annotations

from collections.abc import Collection

# Sniffed MIME type -> Pillow format name, as listed in UPLOADS_IMAGE_FORMATS.
DECODABLE = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/avif": "AVIF",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
    "image/tiff": "TIFF",
    "image/bmp": "BMP",
}


def decoder_format(content_type: str, allowed: Collection[str]) -> str | None:
    """The Pillow format to decode this file as, or ``None`` if it must not be decoded."""
    fmt = DECODABLE.get(content_type)
    return fmt if fmt is not None and fmt in allowed else None
