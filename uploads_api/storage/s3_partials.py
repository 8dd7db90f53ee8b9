"""Unfinished resumable uploads on S3, so that any API process, on any machine, can take
any PATCH: each upload is an S3 multipart upload at its file's final key.

Bytes ``[(n-1)·P, n·P)`` are part ``n`` (``P`` = ``PART_SIZE``, above S3's 5 MiB minimum);
what is past the last whole part waits as a small object, ``tus-tails/<id>/<offset>``,
named by the offset it ends at. An append reads the tail of the offset it starts from,
sends every whole part it completes, and leaves a new tail: nothing the committed offset
covers is ever overwritten, so a PATCH whose offset never got committed (a crash, a
refused checksum) leaves nothing to undo; its parts are sent again, with the same numbers,
by the PATCH that takes its place. Completion assembles the object in S3, with the last
tail as the last part: the bytes never come back through the API whole, but once, read,
for the hash, when the process completing the upload did not hash every chunk itself. A
concatenation has S3 copy each piece in as one part when the pieces allow it (all but the
last of 5 MiB or more), and reads them only for the hash.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from uploads_api.storage.base import Storage
from uploads_api.storage.keys import original_key, validate_file_id
from uploads_api.storage.partials import Appended, BodyReader, Finished
from uploads_api.storage.s3 import S3Storage

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

PART_SIZE = 8 * 1024 * 1024
TAILS = "tus-tails"
S3_MIN_PART = 5 * 1024 * 1024
S3_MAX_PART = 5 * 1024 * 1024 * 1024


class S3Partials:
    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage
        self._client: Any = storage.client
        self._bucket = storage.bucket
        self._upload_ids: dict[str, str] = {}

    def _key(self, upload_id: str) -> str:
        return self.storage.object_key(original_key(upload_id))

    def _tail_key(self, upload_id: str, offset: int) -> str:
        validate_file_id(upload_id)
        return self.storage.object_key(f"{TAILS}/{upload_id}/{offset}")

    async def _call(self, name: str, **params: Any) -> Any:
        return await asyncio.to_thread(getattr(self._client, name), Bucket=self._bucket, **params)

    async def _multipart_id(self, upload_id: str) -> str | None:
        """The S3 upload id of an upload's parts (looked up once per process)."""
        known = self._upload_ids.get(upload_id)
        if known is not None:
            return known
        key = self._key(upload_id)
        listed = await self._call("list_multipart_uploads", Prefix=key)
        found = [u["UploadId"] for u in listed.get("Uploads", []) if u["Key"] == key]
        if not found:
            return None
        self._upload_ids[upload_id] = found[0]
        return str(found[0])

    async def create(self, upload_id: str) -> None:
        started = await self._call("create_multipart_upload", Key=self._key(upload_id))
        self._upload_ids[upload_id] = started["UploadId"]

    async def append(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        limit: int,
        algorithm: str | None = None,
        running: Hash | None = None,
    ) -> Appended:
        multipart = await self._multipart_id(upload_id)
        if multipart is None:
            raise FileNotFoundError(f"no S3 multipart upload for {upload_id}")
        digest = hashlib.new(algorithm) if algorithm else None
        digests = [h for h in (digest, running) if h is not None]
        buffer = bytearray(await self._tail(upload_id, offset))
        base = offset - len(buffer)
        reader = BodyReader(body, limit, whole=digest is not None)
        async for chunk in reader.chunks():
            for each in digests:
                each.update(chunk)
            buffer += chunk
            while len(buffer) >= PART_SIZE:
                await self._send_part(
                    upload_id, multipart, base // PART_SIZE + 1, buffer[:PART_SIZE]
                )
                del buffer[:PART_SIZE]
                base += PART_SIZE
        end = base + len(buffer)
        if buffer and end != offset:
            await self._call("put_object", Key=self._tail_key(upload_id, end), Body=bytes(buffer))
        return Appended(end - offset, digest.digest() if digest else None, reader.cut_by)

    async def _tail(self, upload_id: str, offset: int) -> bytes:
        if offset % PART_SIZE == 0:
            return b""
        answer = await self._call("get_object", Key=self._tail_key(upload_id, offset))
        body = answer["Body"]
        try:
            return bytes(await asyncio.to_thread(body.read))
        finally:
            body.close()

    async def _send_part(
        self, upload_id: str, multipart: str, number: int, data: bytearray
    ) -> None:
        await self._call(
            "upload_part",
            Key=self._key(upload_id),
            UploadId=multipart,
            PartNumber=number,
            Body=bytes(data),
        )

    async def discard_chunk(self, upload_id: str, offset: int) -> None:
        """Nothing to undo: the committed offset's parts and tail were not touched."""

    async def join(
        self, upload_id: str, parts: list[tuple[str, int]], first: Hash | None = None
    ) -> Hash:
        """Each part upload is assembled in S3. When every piece but the last is one S3 may
        copy as a part (5 MiB to 5 GiB), S3 copies each into this upload as one part, and
        the bytes come through here only to be hashed. Otherwise they pass through here once,
        a part at a time, into this upload's parts, hashed on the way."""
        multipart = await self._multipart_id(upload_id)
        if multipart is None:
            raise FileNotFoundError(f"no S3 multipart upload for {upload_id}")
        if _copyable(parts):
            return await self._join_by_copy(upload_id, multipart, parts, first)
        running = hashlib.sha256()
        buffer = bytearray()
        number = 1
        for part, length in parts:
            await self._assemble(part, length)
            async for chunk in self.storage.read(original_key(part)):
                await asyncio.to_thread(running.update, chunk)
                buffer += chunk
                while len(buffer) >= PART_SIZE:
                    await self._send_part(upload_id, multipart, number, buffer[:PART_SIZE])
                    del buffer[:PART_SIZE]
                    number += 1
        if buffer:
            total = sum(length for _part, length in parts)
            await self._call("put_object", Key=self._tail_key(upload_id, total), Body=bytes(buffer))
        return running

    async def _join_by_copy(
        self, upload_id: str, multipart: str, parts: list[tuple[str, int]], first: Hash | None
    ) -> Hash:
        """Piece ``n`` becomes part ``n`` by a copy within S3, and the object is completed
        here (``_assemble`` then finds it whole); meanwhile the pieces are read once for the
        hash, but for the first when its hash is known."""
        for part, length in parts:
            await self._assemble(part, length)

        async def copy(number: int, part: str) -> dict[str, Any]:
            copied = await self._call(
                "upload_part_copy",
                Key=self._key(upload_id),
                UploadId=multipart,
                PartNumber=number,
                CopySource={"Bucket": self._bucket, "Key": self._key(part)},
            )
            return {"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]}

        async def hashed() -> Hash:
            running = first.copy() if first is not None else hashlib.sha256()
            for part, _length in parts[0 if first is None else 1 :]:
                async for chunk in self.storage.read(original_key(part)):
                    await asyncio.to_thread(running.update, chunk)
            return running

        copying = asyncio.gather(*(copy(n, part) for n, (part, _) in enumerate(parts, 1)))
        copied, hashed_all = await asyncio.gather(copying, hashed())
        running: Hash = hashed_all
        await self._call(
            "complete_multipart_upload",
            Key=self._key(upload_id),
            UploadId=multipart,
            MultipartUpload={"Parts": list(copied)},
        )
        self._upload_ids.pop(upload_id, None)
        return running

    async def _assemble(self, upload_id: str, length: int) -> None:
        """The parts, and the last tail as the last part, made one object at the upload's
        key; done already (a retried completion) when the object is there at its length."""
        key = original_key(upload_id)
        if await self.storage.size(key) == length:
            return
        multipart = await self._multipart_id(upload_id)
        if multipart is None:
            raise FileNotFoundError(f"no S3 multipart upload for {upload_id}")
        if length == 0:
            await self._call("put_object", Key=self._key(upload_id), Body=b"")
            await self._call("abort_multipart_upload", Key=self._key(upload_id), UploadId=multipart)
            return
        whole, rest = divmod(length, PART_SIZE)
        if rest:
            await self._send_part(
                upload_id, multipart, whole + 1, bytearray(await self._tail(upload_id, length))
            )
        etags = await self._etags(upload_id, multipart)
        count = whole + (1 if rest else 0)
        await self._call(
            "complete_multipart_upload",
            Key=self._key(upload_id),
            UploadId=multipart,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in range(1, count + 1)]
            },
        )
        self._upload_ids.pop(upload_id, None)

    async def _etags(self, upload_id: str, multipart: str) -> dict[int, str]:
        etags: dict[int, str] = {}
        marker = 0
        while True:
            listed = await self._call(
                "list_parts", Key=self._key(upload_id), UploadId=multipart, PartNumberMarker=marker
            )
            for part in listed.get("Parts", []):
                etags[int(part["PartNumber"])] = str(part["ETag"])
            if not listed.get("IsTruncated"):
                return etags
            marker = int(listed["NextPartNumberMarker"])

    async def finish(self, upload_id: str, length: int, sha256: str | None = None) -> Finished:
        await self._assemble(upload_id, length)
        if sha256 is not None:
            head = b"".join([c async for c in self.storage.read(original_key(upload_id), 0, 4096)])
            return Finished(sha256, head)
        sha = hashlib.sha256()
        head = b""
        async for chunk in self.storage.read(original_key(upload_id)):
            if not head:
                head = chunk[:4096]
            await asyncio.to_thread(sha.update, chunk)
        return Finished(sha.hexdigest(), head)

    async def commit(self, upload_id: str, storage: Storage, key: str) -> None:
        """Assembled at the file's key already, by ``finish``."""
        if key != original_key(upload_id):
            raise ValueError(f"upload {upload_id} is assembled at its own key, not {key!r}")

    async def release(self, upload_id: str) -> None:
        await self.storage.delete_prefix(f"{TAILS}/{upload_id}")

    async def discard(self, upload_id: str) -> None:
        multipart = await self._multipart_id(upload_id)
        if multipart is not None:
            await self.storage.abort_upload(original_key(upload_id), multipart)
        self._upload_ids.pop(upload_id, None)
        await self.storage.delete(original_key(upload_id))
        await self.release(upload_id)


def _copyable(parts: list[tuple[str, int]]) -> bool:
    """Whether S3 can take each piece as one part: every piece but the last 5 MiB to 5 GiB,
    the last at most 5 GiB, none empty."""
    *leading, (_last, last) = parts
    fits = all(S3_MIN_PART <= length <= S3_MAX_PART for _part, length in leading)
    return fits and 0 < last <= S3_MAX_PART
