"""The sweep and the S3 uploads clients are still sending, over a real S3 server (moto):
an upload begun while the sweep runs keeps its parts. The open uploads are read after the
listing, so one listed has its row by then. (moto dates every upload in 2010, so the age
filter spares nothing here: what is still open is all that keeps an upload.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.cluster import AWS_ENV
from tests.service_fixtures import s3_client
from uploads_api.auth import OPEN
from uploads_api.config import Settings
from uploads_api.db.schema import ensure_schema
from uploads_api.runtime import Runtime
from uploads_api.storage import PendingUploads


def test_an_upload_begun_as_the_sweep_lists_keeps_its_parts(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings(
        data_dir=tmp_path, storage_url=f"s3://{s3_bucket}/sweep", s3_endpoint_url=s3_endpoint
    )
    s3 = s3_client(s3_endpoint)

    async def main() -> tuple[str, list[str]]:
        runtime = Runtime.build(settings)
        await ensure_schema(runtime.engines)
        try:
            storage = runtime.storage
            assert isinstance(storage, PendingUploads)
            listing = storage.pending_uploads
            begun: list[str] = []

            async def begun_meanwhile(started_before: float) -> list[tuple[str, str]]:
                begun.append((await runtime.tus_service.create(OPEN, 100, None)).id)
                return await listing(started_before)

            monkeypatch.setattr(storage, "pending_uploads", begun_meanwhile)
            await runtime.cleanup.sweep()
            # And one left by a killed process, with no row: aborted.
            s3.create_multipart_upload(Bucket=s3_bucket, Key="sweep/originals/ab/" + "ab" * 16)
            monkeypatch.setattr(storage, "pending_uploads", listing)
            await runtime.cleanup.sweep()
        finally:
            await runtime.engines.dispose()
        keys = [u["Key"] for u in s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])]
        return begun[0], keys

    upload_id, keys = asyncio.run(main())
    assert keys == [f"sweep/originals/{upload_id[:2]}/{upload_id}"]
