"""``FileSink`` takes one file's bytes: buffers them into large writes, hashes and writes each
buffer in two threads at once (both release the GIL), and keeps the head for type sniffing."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import secrets
from dataclasses import dataclass

from uploads_api.errors import ChecksumMismatch, InsufficientStorage
from uploads_api.ingest.names import clean_filename
from uploads_api.ingest.policy import UploadPolicy
from uploads_api.sniff import sniff_content_type
from uploads_api.storage import BlobWriter, Storage, original_key

WRITE_BUFFER = 1024 * 1024
SNIFF_BYTES = 4096


@dataclass(frozen=True)
class ReceivedFile:
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    storage_key: str
    verified: bool = False


def new_file_id() -> str:
    return secrets.token_hex(16)


class FileSink:
    def __init__(
        self,
        writer: BlobWriter,
        file_id: str,
        key: str,
        filename: str | None,
        policy: UploadPolicy,
        expected_sha256: str | None = None,
    ) -> None:
        self._writer = writer
        self._id = file_id
        self._key = key
        self._filename = clean_filename(filename)
        self._policy = policy
        self._expected = expected_sha256
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._head = b""
        self._content_type: str | None = None
        self._size = 0

    @classmethod
    async def open(
        cls,
        storage: Storage,
        filename: str | None,
        policy: UploadPolicy,
        expected_sha256: str | None = None,
    ) -> FileSink:
        file_id = new_file_id()
        key = original_key(file_id)
        try:
            writer = await storage.open_writer(key)
        except OSError as exc:
            _raise_if_full(exc)
            raise
        return cls(writer, file_id, key, filename, policy, expected_sha256)

    async def feed(self, data: bytes) -> None:
        self._size += len(data)
        self._policy.take_bytes(len(data), self._size, self._filename)
        if self._content_type is None:
            self._head += data[: SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self._sniff()
        self._buffer += data
        if len(self._buffer) >= WRITE_BUFFER:
            await self._flush()

    def _sniff(self) -> None:
        # Checked as soon as the head is in: a refused type costs 4 KiB, not the whole file.
        self._content_type = sniff_content_type(self._head)
        self._policy.check_type(self._content_type, self._filename)

    async def _flush(self) -> None:
        if not self._buffer:
            return
        chunk, self._buffer = bytes(self._buffer), bytearray()
        try:
            await asyncio.gather(
                self._writer.write(chunk), asyncio.to_thread(self._hash.update, chunk)
            )
        except OSError as exc:
            _raise_if_full(exc)
            raise

    async def finish(self) -> ReceivedFile:
        """Write out what is buffered. Nothing is visible at the key before ``commit``."""
        await self._flush()
        if self._content_type is None:
            self._sniff()
        digest = self._hash.hexdigest()
        if self._expected is not None and self._expected != digest:
            raise ChecksumMismatch(
                f"{self._filename!r} has sha256 {digest}, not {self._expected} as the client said",
                expected=self._expected,
                actual=digest,
            )
        assert self._content_type is not None
        return ReceivedFile(
            id=self._id,
            filename=self._filename,
            content_type=self._content_type,
            size=self._size,
            sha256=digest,
            storage_key=self._key,
            verified=self._expected is not None,
        )

    async def commit(self) -> None:
        """Make the blob durable at its key."""
        try:
            await self._writer.commit()
        except OSError as exc:
            _raise_if_full(exc)
            raise

    async def abort(self) -> None:
        await self._writer.abort()


def _raise_if_full(exc: OSError) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise InsufficientStorage("the server has no room left for this upload") from exc
