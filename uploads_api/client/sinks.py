"""Where a download goes: a path (written to a temp file, renamed into place only once
the bytes check out) or a binary file object (written as they come)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO

Destination = str | os.PathLike[str] | BinaryIO


class DownloadSink:
    def __init__(self, dest: Destination) -> None:
        self._hash = hashlib.sha256()
        self.written = 0
        self._target: Path | None = None
        self._temp: str | None = None
        if isinstance(dest, str | os.PathLike):
            self._target = Path(dest)
            if self._target.is_dir():
                raise IsADirectoryError(f"{self._target} is a directory; name a file in it")
            # Not mkstemp: its 0600 would end up on the downloaded file; "x" keeps the umask.
            temp = self._target.with_name(f".{self._target.name}.{secrets.token_hex(4)}.part")
            self._stream: BinaryIO = open(temp, "xb")  # noqa: SIM115 -- closed in commit/abort
            self._temp = str(temp)
        else:
            self._stream = dest

    def write(self, chunk: bytes) -> None:
        """Blocking: the async client calls it in a thread."""
        self._stream.write(chunk)
        self._hash.update(chunk)
        self.written += len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def commit(self) -> None:
        """Flush; for a path, fsync and move the temp file into place."""
        self._stream.flush()
        if self._target is None or self._temp is None:
            return
        os.fsync(self._stream.fileno())
        self._stream.close()
        os.replace(self._temp, self._target)
        self._temp = None

    def abort(self) -> None:
        """Drop a half-written temp file; a caller's file object is left as it is."""
        if self._temp is None:
            return
        self._stream.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)
        self._temp = None
