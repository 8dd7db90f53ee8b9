"""What an upload reads: a path, bytes or a binary file object, one chunk at a time.

A source is opened once per attempt, so a retry sends the bytes again from the start. The
reader hashes what it hands out, so the client can check the server stored exactly that.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from uploads_api.client.batching import PartFailed
from uploads_api.client.errors import IntegrityError

CHUNK_SIZE = 1024 * 1024
# Small files go to a hashing thread several at a time, about this many bytes: a thread
# hop per 10 KiB file cost as much as hashing it. A larger file goes alone.
HASH_JOB_BYTES = 1024 * 1024
Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
_BYTES = (bytes, bytearray, memoryview)


class Reader:
    """One attempt's view of a source: chunks of at most ``CHUNK_SIZE``, hashed as read."""

    def __init__(self, stream: BinaryIO, size: int | None, label: str, owned: bool) -> None:
        self.size = size  # None: unknown, so the body is sent chunked
        self.sent = 0
        self._stream = stream
        self._label = label
        self._owned = owned
        self._hash = hashlib.sha256()
        self._done = False

    def read(self) -> bytes:
        """The next chunk, ``b""`` at the end. Blocking for files."""
        if self._done:
            return b""
        if self.size is None:
            chunk = self._stream.read(CHUNK_SIZE)
            self._done = not chunk
        else:
            want = min(CHUNK_SIZE, self.size - self.sent)
            chunk = _read_up_to(self._stream, want)
            if len(chunk) < want:
                raise IntegrityError(f"{self._label} shrank while being sent")
            if self.sent + len(chunk) == self.size:
                self._done = True
                # Read past the end in the same call: a file still growing would otherwise
                # be sent cut short, under a Content-Length that looked right.
                if self._stream.read(1):
                    raise IntegrityError(f"{self._label} grew while being sent")
        self._hash.update(chunk)
        self.sent += len(chunk)
        return chunk

    @property
    def finished(self) -> bool:
        return self._done

    def hexdigest(self) -> str | None:
        """The sha256 of everything read, once the end has been reached."""
        return self._hash.hexdigest() if self._done else None

    def close(self) -> None:
        if self._owned:
            self._stream.close()


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes, fewer only at the end (a raw stream may return less per read)."""
    parts: list[bytes] = []
    got = 0
    while got < size and (part := stream.read(size - got)):
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class RangeReader:
    """Random access to a source of known size, for parts sent at once: each read names
    its offset. Threads share it; a lock keeps each seek and its read together."""

    def __init__(
        self, stream: BinaryIO, start: int, size: int, label: str, owned: bool, blocking: bool
    ) -> None:
        self.size = size
        self.blocking = blocking  # reads block (a file): the async client reads in a thread
        self._stream = stream
        self._start = start
        self._label = label
        self._owned = owned
        self._lock = threading.Lock()

    def read_at(self, offset: int, length: int) -> bytes:
        with self._lock:
            self._stream.seek(self._start + offset)
            chunk = _read_up_to(self._stream, length)
        if len(chunk) < length:
            raise IntegrityError(f"{self._label} shrank while being sent")
        return chunk

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for offset in range(0, self.size, CHUNK_SIZE):
            digest.update(self.read_at(offset, min(CHUNK_SIZE, self.size - offset)))
        return digest.hexdigest()

    def check_unchanged(self) -> None:
        """Raises ``IntegrityError`` if the source is no longer ``size`` bytes long."""
        with self._lock:
            end = self._stream.seek(0, io.SEEK_END)
        if end - self._start != self.size:
            word = "grew" if end - self._start > self.size else "shrank"
            raise IntegrityError(f"{self._label} {word} while being sent")

    def close(self) -> None:
        if self._owned:
            self._stream.close()


class UploadSource:
    """A source and how to open it again for each attempt."""

    def __init__(self, source: Source, filename: str | None = None) -> None:
        self._source = source
        self._start: int | None = None
        self.opened = 0
        # Opening and reading files blocks; the async client does it in a thread.
        self.blocking = not isinstance(source, _BYTES)
        if isinstance(source, _BYTES):
            if filename is None:
                raise ValueError("uploading bytes needs filename=")
            self.name = filename
        elif isinstance(source, str | os.PathLike):
            self.name = filename or Path(source).name
        else:
            self.name = filename or Path(str(getattr(source, "name", "") or "upload")).name
            if source.seekable():
                self._start = source.tell()

    @property
    def local_path(self) -> Path | None:
        """The file on disk this source is, if it is one (not bytes, not a stream)."""
        source = self._source
        return Path(source) if isinstance(source, str | os.PathLike) else None

    @property
    def retryable(self) -> bool:
        """Whether another attempt can send the same bytes again."""
        if isinstance(self._source, (str, os.PathLike, *_BYTES)):
            return True
        return self._start is not None or self.opened == 0

    def open(self) -> Reader:
        """A reader from the first byte (files are opened and stat'ed here)."""
        self.opened += 1
        source = self._source
        if isinstance(source, _BYTES):
            return Reader(io.BytesIO(source), memoryview(source).nbytes, self.name, owned=True)
        if isinstance(source, str | os.PathLike):
            stream, info = _open_file(source)
            # A pipe or a device has no meaningful size: it is sent chunked.
            size = info.st_size if stat.S_ISREG(info.st_mode) else None
            return Reader(stream, size, os.fspath(source), owned=True)
        if self._start is None:
            return Reader(source, None, self.name, owned=False)
        end = source.seek(0, io.SEEK_END)
        source.seek(self._start)
        return Reader(source, end - self._start, self.name, owned=False)

    def open_ranges(self) -> RangeReader | None:
        """Random access to the bytes, or ``None`` for a source read only in order (a
        pipe, a stream that cannot seek)."""
        source = self._source
        if isinstance(source, _BYTES):
            size = memoryview(source).nbytes
            return RangeReader(io.BytesIO(source), 0, size, self.name, owned=True, blocking=False)
        if isinstance(source, str | os.PathLike):
            stream, info = _open_file(source)
            if not stat.S_ISREG(info.st_mode):
                stream.close()
                return None
            return RangeReader(stream, 0, info.st_size, os.fspath(source), True, blocking=True)
        if self._start is None:
            return None
        end = source.seek(0, io.SEEK_END)
        return RangeReader(source, self._start, end - self._start, self.name, False, True)


def _open_file(path: str | os.PathLike[str]) -> tuple[BinaryIO, os.stat_result]:
    """The file, opened for reading, and what ``fstat`` says of it."""
    stream = open(path, "rb")  # noqa: SIM115 -- the caller's reader closes it
    try:
        return stream, os.fstat(stream.fileno())
    except BaseException:
        stream.close()
        raise


def sha256_file(path: str | os.PathLike[str], stop: threading.Event | None = None) -> str:
    """The hex sha256 of a file, read in chunks. hashlib releases the GIL on large
    updates, so threads hash several files at once. Setting ``stop`` abandons the work
    (``InterruptedError``): a thread hashing a huge file would otherwise hold up exit."""
    digest = hashlib.sha256()
    # Unbuffered: each read goes straight to the file, without a second copy.
    with open(path, "rb", buffering=0) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            if stop is not None and stop.is_set():
                raise InterruptedError(f"hashing {os.fspath(path)} was stopped")
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(
    paths: Sequence[str | os.PathLike[str]], stop: threading.Event | None = None
) -> list[str | OSError]:
    """Each file's hex sha256, or why it could not be read, in one thread: for small
    files a thread hop costs about as much as the hashing. ``stop`` as for
    ``sha256_file``: it ends the whole run."""
    digests: list[str | OSError] = []
    for path in paths:
        try:
            digests.append(sha256_file(path, stop))
        except InterruptedError:
            raise
        except OSError as exc:
            digests.append(exc)
    return digests


def runs(
    todo: Sequence[int], sizes: Sequence[int], *, files: int, size_cap: int
) -> list[list[int]]:
    """``todo`` (indexes into ``sizes``) cut in order into runs of at most ``files``
    files, each ending with the file that brings it to ``size_cap`` bytes."""
    cut: list[list[int]] = [[]]
    size = 0
    for index in todo:
        if cut[-1] and (len(cut[-1]) >= files or size >= size_cap):
            cut.append([])
            size = 0
        cut[-1].append(index)
        size += sizes[index]
    return [run for run in cut if run]


async def read_chunks(
    reader: Reader, blocking: bool, progress: Callable[[int], None] | None
) -> AsyncIterator[bytes]:
    """A body for an async client: chunks read in a thread when reading blocks.
    ``progress`` is told after httpx asks for the next chunk, once the previous went out."""
    while not reader.finished:
        chunk = await asyncio.to_thread(reader.read) if blocking else reader.read()
        if chunk:
            yield chunk
        if progress is not None:
            progress(reader.sent)


class Opened:
    """One file of a batch, opened for a try: its reader and, for a small file, its bytes
    read already (``ahead``); a larger one is read on while it is sent."""

    def __init__(self, reader: Reader, ahead: list[bytes] | None) -> None:
        self.reader = reader
        self.ahead = ahead


def open_batch(paths: Sequence[Path], read_ahead: int) -> list[Opened]:
    """Open every file (blocking: a thread's work), reading those of at most ``read_ahead``
    bytes whole. ``PartFailed`` names a file that cannot be read, or is not a regular file;
    nothing stays open then."""
    opened: list[Opened] = []
    try:
        for index, path in enumerate(paths):
            try:
                reader = UploadSource(path).open()
                opened.append(Opened(reader, None))
                if reader.size is None:
                    raise IntegrityError(f"{path} is not a regular file")
                if reader.size <= read_ahead:
                    opened[-1].ahead = [reader.read()]
                    while not reader.finished:
                        opened[-1].ahead.append(reader.read())
            except (OSError, IntegrityError) as exc:
                raise PartFailed(index, exc) from exc
    except BaseException:
        for item in opened:
            item.reader.close()
        raise
    return opened
