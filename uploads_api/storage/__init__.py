"""Where bytes live: a small ``Storage`` protocol and its backends."""

from uploads_api.storage.base import (
    BatchCommit,
    BlobTarget,
    BlobWriter,
    Buffer,
    DirectTransfer,
    LocalPaths,
    PartsRejected,
    PendingUploads,
    Storage,
)
from uploads_api.storage.keys import original_key, thumbnail_key, thumbnail_prefix, variant_key

__all__ = [
    "BatchCommit",
    "BlobTarget",
    "BlobWriter",
    "Buffer",
    "DirectTransfer",
    "LocalPaths",
    "PartsRejected",
    "PendingUploads",
    "Storage",
    "original_key",
    "thumbnail_key",
    "thumbnail_prefix",
    "variant_key",
]
