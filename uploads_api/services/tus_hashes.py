"""The sha256 of each unfinished upload's bytes so far, kept in this process as PATCHes
append them, so that completing an upload need not read it all back to hash it.

A hash is kept only once the offset it covers is committed, and is used only for exactly
that offset: bytes below a committed offset never change, so it is theirs. Another
process's PATCH, a restart, or a refused chunk leaves this process without the hash for
the upload's current offset, and completion reads the bytes back instead, as before.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

# About 200 bytes each: an upload per entry, the least recently appended forgotten first.
CAPACITY = 4096


class RunningHashes:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._hashes: OrderedDict[str, tuple[int, hashlib._Hash]] = OrderedDict()

    def resume(self, upload_id: str, offset: int) -> hashlib._Hash | None:
        """A hash to extend with the bytes appended at ``offset``: a copy of the one kept for
        that offset (a new one at 0), or ``None`` when this process has none."""
        if offset == 0:
            return hashlib.sha256()
        kept = self._hashes.get(upload_id)
        if kept is None or kept[0] != offset:
            return None
        return kept[1].copy()

    def keep(self, upload_id: str, offset: int, running: hashlib._Hash | None) -> None:
        """``running`` covers the upload's bytes up to ``offset``, now committed."""
        if running is None:
            self._hashes.pop(upload_id, None)
            return
        self._hashes[upload_id] = (offset, running)
        self._hashes.move_to_end(upload_id)
        while len(self._hashes) > self._capacity:
            self._hashes.popitem(last=False)

    def take(self, upload_id: str, offset: int) -> str | None:
        """The hex digest of the upload's bytes up to ``offset``, if kept; forgotten after."""
        kept = self._hashes.pop(upload_id, None)
        if kept is None or kept[0] != offset:
            return None
        return kept[1].hexdigest()

    def forget(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
