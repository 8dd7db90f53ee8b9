"""The storage backend the settings ask for."""

from __future__ import annotations

from pathlib import Path

from uploads_api.config import Settings
from uploads_api.storage.base import Storage
from uploads_api.storage.local import LocalStorage


def build_storage(settings: Settings, data_dir: Path, temp_dir: Path) -> Storage:
    url = settings.storage_url
    if url is None or url.startswith("file:") or "://" not in url:
        root = Path(url.removeprefix("file://")) if url else data_dir / "blobs"
        return LocalStorage(root, temp_dir)
    if url.startswith("s3://"):
        from uploads_api.storage.s3 import S3Storage

        return S3Storage(url, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
    raise ValueError(f"unsupported UPLOADS_STORAGE_URL: {url!r}")
