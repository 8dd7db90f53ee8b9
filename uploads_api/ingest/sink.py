"""``FileSink`` takes one file's bytes: gathers them into large writes, hashes and writes each
batch in two threads at once (both release the GIL) while the next one fills, and keeps
the head for type sniffing. The chunks are never joined: the write is one ``writev`` of
them, so the event loop copies nothing.

With ``UPLOADS_STRIP_METADATA`` set, a JPEG, PNG or WebP passes through a ``Stripper`` on
its way to storage: the record's ``sha256`` and ``size`` then describe the stored bytes,
``received_sha256`` what the client sent (which its checksums are checked against)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import secrets
from collections.abc import Awaitable

from uploads_api.db.models import NewFile
from uploads_api.errors import ChecksumMismatch, InsufficientStorage
from uploads_api.ingest.names import clean_filename
from uploads_api.ingest.policy import UploadPolicy
from uploads_api.ingest.strip import Stripper, stripper_for
from uploads_api.sniff import sniff_content_type
from uploads_api.storage import BatchCommit, BlobTarget, BlobWriter, Buffer, original_key

log = logging.getLogger(__name__)

WRITE_BUFFER = 1024 * 1024
SNIFF_BYTES = 4096
# SHA-256 of 64 KiB takes ~50 us: less than handing it to a thread and back.
INLINE_HASH_BYTES = 64 * 1024
MAX_CHUNKS = 512


def new_file_id(prefix: str = "") -> str:
    """32 random hex digits; ``prefix`` replaces the first ones (files of one request share
    their first two, and so their storage directory: see ``original_key``)."""
    return prefix + secrets.token_hex(16)[len(prefix) :]


class FileSink:
    def __init__(
        self,
        writer: BlobWriter,
        file_id: str,
        key: str,
        filename: str | None,
        policy: UploadPolicy,
        expected_sha256: str | None = None,
        batch: BatchCommit | None = None,
    ) -> None:
        self._writer = writer
        self._batch = batch
        self._id = file_id
        self._key = key
        self._filename = clean_filename(filename)
        self._policy = policy
        self._expected = expected_sha256
        self._hash = hashlib.sha256()  # of the stored bytes
        # Of the bytes as received, when a stripper makes them differ from the stored ones.
        self._received_hash: hashlib._Hash | None = None
        self._stripper: Stripper | None = None
        self._stored_size = 0
        # Chunks since the last write, handed over as they are once there is enough.
        self._chunks: list[Buffer] = []
        self._buffered = 0
        # The buffer being written and hashed, at most one: memory stays bounded.
        self._pending: asyncio.Future[None] | None = None
        # With a ``BatchCommit`` target: the last write and the file's sync, under way.
        self._sealing: asyncio.Future[None] | None = None
        self._head = b""
        self._content_type: str | None = None
        self._size = 0

    @classmethod
    async def open(
        cls,
        storage: BlobTarget,
        filename: str | None,
        policy: UploadPolicy,
        expected_sha256: str | None = None,
        id_prefix: str = "",
    ) -> FileSink:
        file_id = new_file_id(id_prefix)
        key = original_key(file_id)
        try:
            writer = await storage.open_writer(key)
        except OSError as exc:
            _raise_if_full(exc)
            raise
        batch = storage if isinstance(storage, BatchCommit) else None
        return cls(writer, file_id, key, filename, policy, expected_sha256, batch)

    @property
    def writer(self) -> BlobWriter:
        return self._writer

    @property
    def filename(self) -> str:
        """The file's name, cleaned."""
        return self._filename

    async def feed(self, data: Buffer) -> None:
        """Take the next piece of the file; it must not change afterwards (bytes, or a view
        of bytes), since it is written later, from another thread."""
        self._size += len(data)
        self._policy.take_bytes(len(data), self._size, self._filename)
        if self._content_type is None:
            self._head += bytes(data[: SNIFF_BYTES - len(self._head)])
            if len(self._head) >= SNIFF_BYTES:
                self._sniff()
        self._chunks.append(data)
        self._buffered += len(data)
        # Many tiny pieces (a client trickling bytes) are written early, so their count,
        # and the memory the list of them takes, stays bounded. Nothing is written before
        # the type is known: it decides whether the bytes pass through a stripper.
        full = self._buffered >= WRITE_BUFFER or len(self._chunks) >= MAX_CHUNKS
        if full and self._content_type is not None:
            await self._flush()

    def _sniff(self) -> None:
        # Checked as soon as the head is in: a refused type costs 4 KiB, not the whole file.
        self._content_type = sniff_content_type(self._head)
        self._policy.check_type(self._content_type, self._filename)
        self._stripper = stripper_for(self._content_type, self._policy.strip_metadata)
        if self._stripper is not None:
            self._received_hash = hashlib.sha256()

    async def _flush(self, last: bool = False) -> None:
        """Hand the buffer to storage and the hash, and return without waiting for them:
        the next buffer fills from the socket meanwhile, so receiving, hashing and writing
        overlap. Only the previous buffer is waited for."""
        if not self._buffered and not (last and self._stripper is not None):
            return
        chunks = self._chunks
        self._chunks, self._buffered = [], 0
        await self._settle()
        self._pending = asyncio.ensure_future(self._store(chunks, last))

    def _stripped(self, chunks: list[Buffer], last: bool) -> list[Buffer]:
        assert self._stripper is not None
        out: list[Buffer] = []
        for chunk in chunks:
            out += self._stripper.feed(chunk)
        if last:
            out += self._stripper.finish()
        return out

    def _prepare(
        self, chunks: list[Buffer], last: bool
    ) -> tuple[list[Buffer], list[Awaitable[None]]]:
        """The chunks as they will be stored (stripped, if so), and their hashing: done here
        when they are small (less than a thread hop costs), else the steps to run in
        threads, each beside the write (both release the GIL)."""
        received = chunks
        if self._stripper is not None:
            chunks = self._stripped(chunks, last)
            self._stored_size += sum(len(chunk) for chunk in chunks)
        hashes = [(self._hash, chunks)]
        if self._received_hash is not None:
            hashes.append((self._received_hash, received))
        if sum(len(chunk) for chunk in chunks) <= INLINE_HASH_BYTES:
            for digest, pieces in hashes:
                _hash_all(digest, pieces)
            return chunks, []
        return chunks, [asyncio.to_thread(_hash_all, digest, pieces) for digest, pieces in hashes]

    async def _store(self, chunks: list[Buffer], last: bool = False) -> None:
        stored, hashing = self._prepare(chunks, last)
        try:
            if hashing:
                await asyncio.gather(self._writer.write(*stored), *hashing)
            else:
                await self._writer.write(*stored)
        except OSError as exc:
            _raise_if_full(exc)
            raise

    async def _settle(self) -> None:
        """Wait for the buffer in flight. Shielded: if the request is cancelled, the write
        goes on in its thread and ``abort`` waits for it before the file is closed."""
        if self._pending is not None:
            await asyncio.shield(self._pending)
            self._pending = None

    async def finish(self) -> NewFile:
        """Write out what is buffered. Nothing is visible at the key before ``commit``.
        The record has no owner yet: the service that asked for the upload adds it."""
        if self._content_type is None:
            self._sniff()
        if self._batch is None:
            await self._flush(last=True)
            await self._settle()
        else:
            await self._settle()
            last, hashing = self._prepare(self._chunks, last=True)
            self._chunks, self._buffered = [], 0
            await asyncio.gather(*hashing)
            # Not waited for here: the next part is read while this file is synced.
            self._sealing = asyncio.ensure_future(self._seal(self._batch, last))
        if self._stripper is not None and self._stripper.gave_up:
            # Stored as sent from that point on: metadata there may have stayed.
            log.warning(
                "stripping metadata from %r stopped: %s", self._filename, self._stripper.gave_up
            )
        digest = self._hash.hexdigest()
        received = digest if self._received_hash is None else self._received_hash.hexdigest()
        # The client's checksum is of what it sent.
        if self._expected is not None and self._expected != received:
            raise ChecksumMismatch(
                f"{self._filename!r} has sha256 {received}, not {self._expected} as the client"
                " said",
                expected=self._expected,
                actual=received,
            )
        assert self._content_type is not None
        stripped = None
        if self._stripper is not None:
            removed = self._stripper.removed
            stripped = {
                "stripped": {
                    "location": "location" in removed,
                    "all": "metadata" in removed,
                    # False: part of the file could not be parsed and went as sent.
                    "complete": self._stripper.gave_up is None,
                }
            }
        return NewFile(
            id=self._id,
            filename=self._filename,
            content_type=self._content_type,
            size=self._size if self._stripper is None else self._stored_size,
            sha256=digest,
            storage_key=self._key,
            verified=self._expected is not None,
            received_sha256=received,
            metadata=stripped,
        )

    async def _seal(self, batch: BatchCommit, last: list[Buffer]) -> None:
        try:
            await batch.seal(self._writer, *last)
        except OSError as exc:
            _raise_if_full(exc)
            raise

    async def sealed(self) -> None:
        """Wait until the bytes are durable (with a ``BatchCommit`` target; else at once)."""
        if self._sealing is not None:
            await asyncio.shield(self._sealing)

    async def commit(self) -> None:
        """Make the blob durable at its key."""
        try:
            await self._writer.commit()
        except OSError as exc:
            _raise_if_full(exc)
            raise

    async def abort(self) -> None:
        for pending in (self._pending, self._sealing):
            if pending is not None:
                # A write may still run in its thread: let it end before the file is closed.
                await asyncio.wait([pending])
                with contextlib.suppress(asyncio.CancelledError):
                    pending.exception()  # already reported, or moot now that all is dropped
        self._pending = self._sealing = None
        await self._writer.abort()


def _hash_all(digest: hashlib._Hash, chunks: list[Buffer]) -> None:
    for chunk in chunks:
        digest.update(chunk)


def _raise_if_full(exc: OSError) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise InsufficientStorage("the server has no room left for this upload") from exc
