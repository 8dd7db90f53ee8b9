"""What a new file's tasks have to do, decided at upload from its sniffed type and size.

The basic facts (size, hash, type) are known once the bytes are in, so they are written
with the record. A task with nothing left to do (no thumbnails for a text file, no details
to read from a zip) is recorded settled in the upload's transaction instead of being
queued, claimed and finished: a file that needs no processing is ``ready`` in the 201.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from uploads_api.db.models import CLEANUP, METADATA, SKIPPED, SUCCEEDED, THUMBNAILS
from uploads_api.media.formats import decoder_format
from uploads_api.sniff import kind_for

# A settled task: its final state, and the note shown as its ``error`` (why it did nothing).
Settled = dict[str, tuple[str, str | None]]


def basic_facts(content_type: str, size: int, sha256: str) -> dict[str, Any]:
    """The metadata every file has, whatever its type."""
    return {
        "size": size,
        "sha256": sha256,
        "mime_type": content_type,
        "kind": kind_for(content_type),
        "empty": size == 0,
    }


def has_details(content_type: str, size: int, image_formats: Collection[str]) -> bool:
    """Whether the metadata task has more than the basic facts to read (image or PDF)."""
    if size == 0:
        return False
    kind = kind_for(content_type)
    return kind == "pdf" or (
        kind == "image" and decoder_format(content_type, image_formats) is not None
    )


def has_thumbnails(content_type: str, size: int, image_formats: Collection[str]) -> bool:
    return size > 0 and decoder_format(content_type, image_formats) is not None


def settled_at_upload(content_type: str, size: int, image_formats: Collection[str]) -> Settled:
    """The tasks that need no run for this file, with the state each is recorded in."""
    settled: Settled = {}
    if not has_details(content_type, size, image_formats):
        settled[METADATA] = (SUCCEEDED, None)
    if not has_thumbnails(content_type, size, image_formats):
        settled[THUMBNAILS] = (SKIPPED, f"no thumbnails for {content_type}")
    if METADATA in settled and THUMBNAILS in settled:
        # Nothing ran, so nothing left scratch files behind.
        settled[CLEANUP] = (SKIPPED, "no processing ran, so there is nothing to clean up")
    return settled
