"""One pipeline suite, run on the embedded default (in-process tasks, SQLite, local disk) and
on the scale-out stack (Celery workers over Redis, PostgreSQL, S3). Same task code."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests import imagegen
from tests.cluster import AWS_ENV, ClusterConfig, Worker
from tests.conftest import Server, ServerFactory
from tests.helpers import upload, wait_done
from tests.service_fixtures import s3_client
from uploads_api.config import Settings
from uploads_api.storage.factory import build_storage

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    name: str
    server: Server
    settings: Settings

    def stored_keys(self, file_id: str) -> set[str]:
        """Every blob the storage holds for a file (original and thumbnails)."""
        storage = build_storage(self.settings, self.server.data_dir, self.server.data_dir / "tmp")

        async def collect() -> set[str]:
            found = set()
            for prefix in (f"originals/{file_id[:2]}", f"thumbnails/{file_id[:2]}/{file_id}"):
                async for key, _mtime in storage.list(prefix):
                    if file_id in key:
                        found.add(key)
            return found

        return asyncio.run(collect())


@pytest.fixture(params=["inprocess", "celery"])
def stack(
    request: pytest.FixtureRequest, server_factory: ServerFactory, tmp_path: Path
) -> Iterator[Stack]:
    if request.param == "inprocess":
        server = server_factory()
        yield Stack("inprocess", server, Settings(data_dir=server.data_dir))
        return
    bucket = request.getfixturevalue("s3_bucket")
    config = ClusterConfig(
        database_url=request.getfixturevalue("postgres_url"),
        storage_url=f"s3://{bucket}/uploads",
        s3_endpoint=request.getfixturevalue("s3_endpoint"),
        broker_url=request.getfixturevalue("redis_url") + "/0",
    )
    worker = Worker(config, tmp_path / "worker", tmp_path / "worker.log", beat=True)
    worker.start()
    try:
        server = server_factory(extra_env=AWS_ENV, **config.settings())
        settings = Settings(**config.settings())  # type: ignore[arg-type]
        with pytest.MonkeyPatch.context() as patch:
            for name, value in AWS_ENV.items():
                patch.setenv(name, value)
            yield Stack("celery", server, settings)
    finally:
        worker.stop()


def test_images_and_documents_are_processed(stack: Stack, tmp_path: Path) -> None:
    photo = imagegen.jpeg_with_orientation(tmp_path, 6, size=(640, 480))
    png = imagegen.rgba_png(tmp_path / "p", size=(300, 200))
    pdf = imagegen.pdf_file(tmp_path, pages=2)
    with httpx.Client(base_url=stack.server.url, timeout=60) as client:
        records = [wait_done(client, r["id"], timeout=60) for r in upload(client, photo, png, pdf)]
        assert [r["status"] for r in records] == ["ready"] * 3
        photo_record, png_record, pdf_record = records
        thumbs = {t["size"]: t for t in photo_record["thumbnails"]}
        assert (thumbs[256]["width"], thumbs[256]["height"]) == (256, 192)
        image = Image.open(io.BytesIO(client.get(thumbs[256]["url"]).content))
        assert image.size == (256, 192)
        assert photo_record["metadata"]["image"]["orientation"] == 6
        assert png_record["metadata"]["image"]["has_alpha"] is True
        assert pdf_record["metadata"]["pdf"]["pages"] == 2
        body = client.get(photo_record["links"]["content"]).content
        assert hashlib.sha256(body).hexdigest() == photo_record["sha256"]
        partial = client.get(photo_record["links"]["content"], headers={"Range": "bytes=2-9"})
        assert partial.status_code == 206 and partial.content == body[2:10]
        keys = stack.stored_keys(photo_record["id"])
        assert len(keys) == 3, keys  # the original and one thumbnail per size


def test_delete_removes_every_blob(stack: Stack, tmp_path: Path) -> None:
    photo = imagegen.jpeg_photo(tmp_path, size=(500, 400))
    with httpx.Client(base_url=stack.server.url, timeout=60) as client:
        (record,) = upload(client, photo)
        wait_done(client, record["id"], timeout=60)
        assert stack.stored_keys(record["id"])
        assert client.delete(f"/v1/files/{record['id']}").status_code == 204
        assert client.get(f"/v1/files/{record['id']}").status_code == 404
        deadline = asyncio.run(_wait_empty(stack, record["id"]))
        assert deadline, "the cleanup task removed the original and the thumbnails"


async def _wait_empty(stack: Stack, file_id: str) -> bool:
    for _ in range(200):
        if not await asyncio.to_thread(stack.stored_keys, file_id):
            return True
        await asyncio.sleep(0.1)
    return False


def test_a_broken_image_fails_and_can_be_retried(stack: Stack, tmp_path: Path) -> None:
    with httpx.Client(base_url=stack.server.url, timeout=60) as client:
        (record,) = upload(client, imagegen.truncated_jpeg(tmp_path))
        record = wait_done(client, record["id"], timeout=60)
        assert record["status"] == "failed"
        (thumbs,) = [t for t in record["tasks"] if t["name"] == "thumbnails"]
        assert thumbs["state"] == "failed" and thumbs["attempts"] == 1 and thumbs["error"]
        assert client.post(f"/v1/files/{record['id']}/retry").status_code == 200
        record = wait_done(client, record["id"], timeout=60)
        (thumbs,) = [t for t in record["tasks"] if t["name"] == "thumbnails"]
        assert record["status"] == "failed" and thumbs["attempts"] == 1


def test_no_multipart_upload_is_left_pending(stack: Stack, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x00\x01" * (9 * 1024 * 1024))  # 18 MiB: several S3 parts
    with httpx.Client(base_url=stack.server.url, timeout=120) as client:
        record = client.put("/v1/files/big.bin", content=big.read_bytes()).json()
        assert record["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
        assert client.get(record["links"]["content"]).content == big.read_bytes()
    if stack.name == "celery":
        bucket = stack.settings.storage_url.split("/")[2]  # type: ignore[union-attr]
        client_s3 = s3_client(str(stack.settings.s3_endpoint_url))
        assert client_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert stack.server.temp_files() == []
