"""S3-compatible object storage. Uploads go up as multipart uploads in parts of at least
8 MiB (small blobs in one PUT at commit), so memory stays flat and nothing is visible at a
key before ``commit``. boto3 is blocking, so every call runs in a thread.

Direct transfer (``DirectTransfer``): URLs are presigned for the public endpoint when one is
set (the address clients reach), while the service itself talks to the internal one."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from uploads_api.storage.base import Buffer, PartsRejected
from uploads_api.storage.keys import validate_key

PART_SIZE = 8 * 1024 * 1024
READ_CHUNK = 1024 * 1024
# What S3 answers when it will not assemble the parts named.
_PARTS_REFUSED = ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "NoSuchUpload")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``("bucket", "prefix")``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    return parsed.netloc, parsed.path.strip("/")


class S3BlobWriter:
    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False

    async def write(self, *chunks: Buffer) -> None:
        for chunk in chunks:
            self._buffer += chunk
        if len(self._buffer) >= PART_SIZE:
            await self._send_part()

    async def _send_part(self) -> None:
        body, self._buffer = bytes(self._buffer), bytearray()
        if self._upload_id is None:
            started = await asyncio.to_thread(
                self._client.create_multipart_upload, Bucket=self._bucket, Key=self._key
            )
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        sent = await asyncio.to_thread(
            self._client.upload_part,
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def commit(self) -> None:
        if self._done:
            return
        if self._upload_id is None:
            body, self._buffer = bytes(self._buffer), bytearray()
            await asyncio.to_thread(
                self._client.put_object, Bucket=self._bucket, Key=self._key, Body=body
            )
        else:
            if self._buffer:
                await self._send_part()
            await asyncio.to_thread(
                self._client.complete_multipart_upload,
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._done = True

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()
        if self._upload_id is not None:
            await asyncio.to_thread(
                self._client.abort_multipart_upload,
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
            )


class S3Storage:
    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        if client is None:
            client = _make_client(endpoint_url, region)
        self._client = client
        # Signing is local arithmetic: a second client costs no connection.
        self._signer = _make_client(public_endpoint_url, region) if public_endpoint_url else client

    @property
    def client(self) -> Any:
        """The boto3 client, for the modules that work with this storage's objects."""
        return self._client

    def object_key(self, key: str) -> str:
        """The S3 key of a storage key (under the prefix)."""
        return self._object_key(key)

    def _object_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _storage_key(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1 :] if self.prefix else object_key

    async def open_writer(self, key: str) -> S3BlobWriter:
        return S3BlobWriter(self._client, self.bucket, self._object_key(key))

    async def put_file(self, key: str, source: Path) -> None:
        await asyncio.to_thread(
            self._client.upload_file, str(source), self.bucket, self._object_key(key)
        )
        await asyncio.to_thread(source.unlink, True)

    async def fetch(self, key: str, destination: Path) -> None:
        await asyncio.to_thread(
            self._client.download_file, self.bucket, self._object_key(key), str(destination)
        )

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self._object_key(key)}
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        from botocore.exceptions import ClientError

        try:
            answer = await asyncio.to_thread(lambda: self._client.get_object(**request))
        except ClientError as exc:
            if _error_code(exc) == "InvalidRange":
                return  # starts at or past the end: nothing to send, as on local disk
            raise
        body = answer["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, READ_CHUNK):
                yield chunk
        finally:
            body.close()

    async def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = await asyncio.to_thread(
                self._client.head_object, Bucket=self.bucket, Key=self._object_key(key)
            )
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(
            self._client.delete_object, Bucket=self.bucket, Key=self._object_key(key)
        )

    async def delete_prefix(self, prefix: str) -> None:
        keys = [key async for key, _mtime in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._object_key(k)} for k in keys[start : start + 1000]]
            await asyncio.to_thread(
                self._client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch}
            )

    async def list(self, prefix: str) -> AsyncIterator[tuple[str, float]]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=self._object_key(prefix) + "/"))
        while page := await asyncio.to_thread(next, pages, None):
            for item in page.get("Contents", []):
                yield self._storage_key(item["Key"]), item["LastModified"].timestamp()

    async def pending_uploads(self, started_before: float) -> builtins.list[tuple[str, str]]:
        paginator = self._client.get_paginator("list_multipart_uploads")
        prefix = self._object_key("originals")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        pending: builtins.list[tuple[str, str]] = []
        while page := await asyncio.to_thread(next, pages, None):
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() < started_before:
                    pending.append((self._storage_key(upload["Key"]), str(upload["UploadId"])))
        return pending

    async def check(self) -> None:
        await asyncio.to_thread(self._client.head_bucket, Bucket=self.bucket)

    # Direct transfer ------------------------------------------------------------------------

    async def start_upload(self, key: str) -> str:
        started = await asyncio.to_thread(
            self._client.create_multipart_upload, Bucket=self.bucket, Key=self._object_key(key)
        )
        return str(started["UploadId"])

    async def part_urls(
        self, key: str, upload_id: str, count: int, expires_in: int
    ) -> Sequence[str]:
        object_key = self._object_key(key)

        def sign_all() -> Sequence[str]:
            return [
                self._signer.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": self.bucket,
                        "Key": object_key,
                        "UploadId": upload_id,
                        "PartNumber": number,
                    },
                    ExpiresIn=expires_in,
                )
                for number in range(1, count + 1)
            ]

        return await asyncio.to_thread(sign_all)

    async def finish_upload(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(
                self._client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=self._object_key(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            )
        except ClientError as exc:
            if _error_code(exc) in _PARTS_REFUSED:
                raise PartsRejected(str(exc.response.get("Error", {}).get("Message", ""))) from exc
            raise

    async def abort_upload(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(
                self._client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=self._object_key(key),
                UploadId=upload_id,
            )
        except ClientError as exc:
            if _error_code(exc) not in ("NoSuchUpload", "404"):
                raise

    async def download_url(
        self, key: str, *, disposition: str, content_type: str, expires_in: int
    ) -> str:
        params = {
            "Bucket": self.bucket,
            "Key": self._object_key(key),
            "ResponseContentType": content_type,
            "ResponseContentDisposition": disposition,
        }
        return str(
            await asyncio.to_thread(
                self._signer.generate_presigned_url,
                "get_object",
                Params=params,
                ExpiresIn=expires_in,
            )
        )


def _make_client(endpoint_url: str | None, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # Credentials come the usual AWS way: environment, profile, instance role. SigV4 for
    # every region, so presigned URLs work everywhere.
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(signature_version="s3v4"),
    )


def _error_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
