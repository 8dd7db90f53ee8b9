"""What a new file's tasks have to do, decided at upload from its sniffed type and size.

The basic facts (size, hash, type) are known once the bytes are in, so they are written
with the record. A task with nothing left to do (no thumbnails for a text file, no details
to read from a zip) is recorded settled in the upload's transaction instead of being
queued, claimed and finished: a file that needs no processing is ``ready`` in the 201.
"""

from __future__ import annotations

from typing import Any

from uploads_api.db.models import CLEANUP, METADATA, SKIPPED, SUCCEEDED, THUMBNAILS
from uploads_api.media.formats import Decoders
from uploads_api.sniff import kind_for

# A settled task: its final state, and the note shown as its ``error`` (why it did nothing).
Settled = dict[str, tuple[str, str | None]]


def basic_facts(content_type: str, size: int, sha256: str | None) -> dict[str, Any]:
    """The metadata every file has, whatever its type."""
    return {
        "size": size,
        "sha256": sha256,
        "mime_type": content_type,
        "kind": kind_for(content_type),
        "empty": size == 0,
    }


def has_details(content_type: str, size: int, decoders: Decoders) -> bool:
    """Whether the metadata task has more than the basic facts to read: a decoder takes
    this file (an image, a video, audio tags, a PDF)."""
    return size > 0 and decoders.kind_of(content_type) is not None


def has_thumbnails(content_type: str, size: int, decoders: Decoders) -> bool:
    """Whether a preview can be made: the image itself, a video frame, an audio file's
    cover art, a PDF's first page."""
    return size > 0 and decoders.kind_of(content_type) is not None


def settled_at_upload(content_type: str, size: int, decoders: Decoders) -> Settled:
    """The tasks that need no run for this file, with the state each is recorded in."""
    settled: Settled = {}
    if not has_details(content_type, size, decoders):
        settled[METADATA] = (SUCCEEDED, None)
    if not has_thumbnails(content_type, size, decoders):
        settled[THUMBNAILS] = (SKIPPED, f"no thumbnails for {content_type}")
    if METADATA in settled and THUMBNAILS in settled:
        # Nothing ran, so nothing left scratch files behind.
        settled[CLEANUP] = (SKIPPED, "no processing ran, so there is nothing to clean up")
    return settled
