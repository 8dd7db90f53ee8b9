"""The storage backend the settings ask for."""

from __future__ import annotations

from pathlib import Path

from uploads_api.config import Settings
from uploads_api.storage.base import Storage
from uploads_api.storage.local import LocalStorage
from uploads_api.storage.partials import LocalPartials, PartialStore


def build_storage(settings: Settings, data_dir: Path, temp_dir: Path) -> Storage:
    url = settings.storage_url
    if url is None:
        return LocalStorage(data_dir / "blobs", temp_dir)
    if url.startswith("file:") or "://" not in url:
        # file:///abs, file:rel and a bare path all name a local directory.
        path = url.removeprefix("file:")
        path = "/" + path.lstrip("/") if url.startswith("file://") else path
        return LocalStorage(Path(path), temp_dir)
    if url.startswith("s3://"):
        from uploads_api.storage.s3 import S3Storage

        return S3Storage(
            url,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
        )
    raise ValueError(f"unsupported UPLOADS_STORAGE_URL: {url!r}")


def build_partials(storage: Storage, data_dir: Path) -> PartialStore:
    """Where unfinished resumable uploads wait: S3 parts with S3 storage (any API process
    on any machine takes any PATCH), else files under ``<data dir>/tus``."""
    from uploads_api.storage.s3 import S3Storage

    if isinstance(storage, S3Storage):
        from uploads_api.storage.s3_partials import S3Partials

        return S3Partials(storage)
    return LocalPartials(data_dir / "tus")
