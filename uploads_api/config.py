"""Settings, read once from ``UPLOADS_*`` environment variables and passed down explicitly."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from uploads_api.media.formats import VIDEO_CONTAINERS, Decoders
from uploads_api.media.outputs import OUTPUTS
from uploads_api.media.variant_spec import (
    MAX_DIMENSION,
    PRESET_NAME,
    parse_presets,
    read_spec,
)

GiB = 1024**3
MiB = 1024**2

DEFAULT_IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "HEIF", "TIFF", "BMP")
DEFAULT_VIDEO_FORMATS = tuple(VIDEO_CONTAINERS.values())
DAY = 86400.0
HOUR = 3600.0
WEBHOOK_RETRY_SCHEDULE = (
    5.0,
    300.0,
    1800.0,
    2 * HOUR,
    5 * HOUR,
    10 * HOUR,
    14 * HOUR,
    20 * HOUR,
    24 * HOUR,
)


class Settings(BaseSettings):
    """Every knob of the service. ``docs/configuration.md`` documents each one."""

    model_config = SettingsConfigDict(env_prefix="UPLOADS_", extra="ignore")

    data_dir: Path = Path("./storage")
    database_url: str | None = None
    database_busy_timeout: float = Field(default=30.0, gt=0)
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Direct transfer with S3: URLs are presigned for this address, the one clients reach
    # (UPLOADS_S3_ENDPOINT_URL may be an internal one); unset, for the endpoint itself.
    s3_public_endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    # Downloads answered 302 to a presigned S3 URL living this many seconds (at most what is
    # left of a signed link), instead of streamed through the API.
    s3_presigned_downloads: bool = False
    s3_presigned_expiry: int = Field(default=300, ge=1, le=7 * 86400)
    # POST /v1/direct-uploads (S3 only): clients PUT parts of this size straight to S3,
    # within this many seconds; clients use it for files of at least min_size bytes.
    direct_uploads: bool = True
    direct_upload_part_size: int = Field(default=16 * MiB, ge=5 * MiB, le=5 * GiB)
    direct_upload_min_size: int = Field(default=8 * MiB, ge=1)
    direct_upload_expiry: int = Field(default=86400, ge=1, le=7 * 86400)
    # Resumable uploads (tus, /v1/tus/): an unfinished upload expires this many seconds
    # after its last PATCH; unfinished uploads per API key.
    tus_expiry: int = Field(default=86400, ge=1)
    tus_max_open: int = Field(default=100, ge=1)
    task_backend: Literal["inprocess", "celery"] = "inprocess"
    broker_url: str = "redis://127.0.0.1:6379/0"
    celery_queue: str = "uploads"
    reconcile_after: float = Field(default=60.0, gt=0)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)

    max_file_size: int = Field(default=GiB, gt=0)
    max_files_per_request: int = Field(default=100, gt=0)
    max_fields_per_request: int = Field(default=1000, gt=0)
    max_field_size: int = Field(default=64 * 1024, gt=0)
    max_part_header_size: int = Field(default=16 * 1024, gt=0)
    body_timeout: float = Field(default=30.0, gt=0)
    allowed_types: Annotated[tuple[str, ...], NoDecode] = ()

    # An upload's Idempotency-Key answers a retry with the first answer for this long.
    idempotency_ttl: float = Field(default=DAY, gt=0)

    quota_bytes: int | None = Field(default=None, gt=0)
    quota_files: int | None = Field(default=None, gt=0)
    max_concurrent_uploads: int | None = Field(default=None, gt=0)
    bodies_at_once: int = Field(default=4, gt=0)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    thumbnail_sizes: Annotated[tuple[int, ...], NoDecode] = (256, 1024)
    thumbnail_format: str = "webp"
    image_formats: Annotated[tuple[str, ...], NoDecode] = DEFAULT_IMAGE_FORMATS
    max_image_pixels: int = Field(default=100_000_000, gt=0)
    video_formats: Annotated[tuple[str, ...], NoDecode] = DEFAULT_VIDEO_FORMATS
    # Metadata removed from JPEG, PNG and WebP while they stream in: GPS, or all of it but
    # the orientation and the colour profile.
    strip_metadata: Literal["none", "location", "all"] = "none"
    # Per media task in a pool process: wall-clock seconds (the worker is replaced when
    # it overruns), and the address space a worker may map.
    media_timeout: float = Field(default=120.0, gt=0)
    media_memory_limit: int = Field(default=4 * GiB, ge=256 * MiB)

    # Image variants (GET /v1/files/{id}/variants/{spec}): the largest width or height a
    # spec may ask for; presets (name -> canonical spec), which when set are all that is
    # served; the bytes of variants kept per owner, least recently used removed first.
    variant_max_size: int = Field(default=4096, ge=1, le=MAX_DIMENSION)
    variant_presets: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    variant_cache_bytes: int = Field(default=GiB, ge=0)

    # More tasks than image workers: a task's steps outside the pool (copying thumbnails
    # in, recording them) leave a decoder idle unless another task has work queued for it.
    task_concurrency: int = Field(default=4 * (os.cpu_count() or 1), gt=0)
    image_workers: int = Field(default=os.cpu_count() or 1, gt=0)
    image_pool_idle_seconds: float = Field(default=120.0, gt=0)
    task_max_attempts: int = Field(default=3, ge=1)
    task_retry_base_delay: float = Field(default=2.0, ge=0)
    task_lease_seconds: float = Field(default=30.0, gt=0)
    task_poll_interval: float = Field(default=1.0, gt=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)

    sweep_interval: float = Field(default=300.0, gt=0)
    temp_ttl: float = Field(default=3600.0, ge=1)

    # Events out. Retries wait these many seconds after the previous attempt (the Standard
    # Webhooks example schedule); past the last, a delivery is dead.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = WEBHOOK_RETRY_SCHEDULE
    webhook_timeout: float = Field(default=15.0, gt=0)
    webhook_allow_private: bool = False
    webhook_allowed_targets: Annotated[tuple[str, ...], NoDecode] = ()
    event_retention: float = Field(default=7 * DAY, gt=0)
    # GET /v1/events: a comment line after this many seconds without anything else, so
    # proxies and clients see a live connection.
    event_stream_heartbeat: float = Field(default=15.0, gt=0)
    audit_retention: float = Field(default=90 * DAY, gt=0)
    # Keys for signed tokens and links; the first signs, any verifies (rotation). Unset: one
    # is generated and kept in the data dir.
    signing_key: Annotated[tuple[str, ...], NoDecode] = ()
    # Signed links (POST /v1/files/{id}/links): the base their URLs start with, as clients
    # reach the server (a proxy's address; unset: the request's own), and their longest life.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    link_max_age: int = Field(default=7 * 86400, ge=1)

    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    @field_validator("thumbnail_format", mode="after")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in OUTPUTS:
            raise ValueError(f"must be one of {', '.join(OUTPUTS)}")
        return value

    @field_validator("thumbnail_sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(int(part) for part in value.split(",") if part.strip())
        if isinstance(value, (tuple, list)):
            sizes = tuple(sorted({int(v) for v in value}, reverse=True))
            if not sizes or any(s <= 0 or s > 8192 for s in sizes):
                raise ValueError("thumbnail sizes must be between 1 and 8192 px")
            return sizes
        return value

    @field_validator(
        "allowed_types", "cors_origins", "webhook_allowed_targets", "signing_key", mode="before"
    )
    @classmethod
    def _parse_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_types", mode="after")
    @classmethod
    def _lower_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(part.lower() for part in value)

    @field_validator("variant_presets", mode="before")
    @classmethod
    def _parse_presets(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_presets(value)
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(float(part) for part in value.split(",") if part.strip())
        if isinstance(value, (tuple, list)) and any(float(v) < 0 for v in value):
            raise ValueError("retry delays are seconds, 0 or more")
        return value

    @field_validator("webhook_secret", mode="after")
    @classmethod
    def _whsec(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("whsec_"):
            raise ValueError("must be a Standard Webhooks secret: whsec_ and base64")
        return value

    @field_validator("signing_key", mode="after")
    @classmethod
    def _long_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # A short key can be guessed offline from one token; 32 characters of base64 are
        # 192 bits.
        if any(len(key) < 32 for key in value):
            raise ValueError("each key needs at least 32 characters (openssl rand -base64 32)")
        return value

    @field_validator("image_formats", "video_formats", mode="before")
    @classmethod
    def _parse_formats(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, (tuple, list)):
            # Pillow's format names are upper case; container names lower case.
            case = str.upper if info.field_name == "image_formats" else str.lower
            return tuple(case(str(v).strip()) for v in value)
        return value

    @model_validator(mode="after")
    def _check_lease_renewal(self) -> Settings:
        # Leases are renewed from the runner loop, which sleeps up to one poll interval.
        if self.task_poll_interval > self.task_lease_seconds / 3:
            raise ValueError("UPLOADS_TASK_POLL_INTERVAL must be at most a third of the lease")
        unknown = set(self.image_formats) - set(DEFAULT_IMAGE_FORMATS)
        if unknown:
            raise ValueError(f"unknown image formats: {', '.join(sorted(unknown))}")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("UPLOADS_WEBHOOK_URL needs UPLOADS_WEBHOOK_SECRET (whsec_...)")
        unknown = set(self.video_formats) - set(DEFAULT_VIDEO_FORMATS)
        if unknown:
            raise ValueError(f"unknown video formats: {', '.join(sorted(unknown))}")
        self._check_presets()
        return self

    def _check_presets(self) -> None:
        # Presets given as a dict (Settings(variant_presets=...)) are checked here too.
        for name, text in self.variant_presets.items():
            if not PRESET_NAME.fullmatch(name):
                raise ValueError(f"variant preset name {name!r}: a-z, 0-9, - and _")
            spec = read_spec(text)
            if spec.canonical != text:
                raise ValueError(f"variant preset {name}: write its spec as {spec.canonical}")
            largest = max(spec.width or 0, spec.height or 0)
            if largest > self.variant_max_size:
                raise ValueError(
                    f"variant preset {name} asks for {largest} px, above"
                    f" UPLOADS_VARIANT_MAX_SIZE ({self.variant_max_size})"
                )

    @property
    def decoders(self) -> Decoders:
        return Decoders(self.image_formats, self.video_formats)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'uploads.db').resolve()}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
