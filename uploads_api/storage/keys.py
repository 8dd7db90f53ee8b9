"""Storage keys are built and checked here, once, before any backend sees them."""

from __future__ import annotations

import re

_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$")
_FILE_ID = re.compile(r"^[0-9a-f]{32}$")


def validate_key(key: str) -> str:
    """Refuse anything that could step outside the storage root (``..``, ``/x``, odd bytes)."""
    if len(key) > 512 or not _KEY.fullmatch(key) or ".." in key:
        raise ValueError(f"invalid storage key: {key!r}")
    return key


def validate_file_id(file_id: str) -> str:
    if not _FILE_ID.fullmatch(file_id):
        raise ValueError(f"invalid file id: {file_id!r}")
    return file_id


def original_key(file_id: str) -> str:
    validate_file_id(file_id)
    return f"originals/{file_id[:2]}/{file_id}"


def thumbnail_prefix(file_id: str) -> str:
    validate_file_id(file_id)
    return f"thumbnails/{file_id[:2]}/{file_id}"


def thumbnail_key(file_id: str, size: int, extension: str) -> str:
    return validate_key(f"{thumbnail_prefix(file_id)}/{int(size)}.{extension}")


def variant_key(file_id: str, name: str, extension: str) -> str:
    """Beside the thumbnails, under their prefix: deleting a file's thumbnails deletes its
    variants too, and the sweep finds them as it finds thumbnails."""
    return validate_key(f"{thumbnail_prefix(file_id)}/variants/{name}.{extension}")


def file_id_of(key: str) -> str | None:
    """The file id a key belongs to, for the sweep that looks for unreferenced blobs."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] in ("originals", "thumbnails") and _FILE_ID.fullmatch(parts[2]):
        return parts[2]
    return None
