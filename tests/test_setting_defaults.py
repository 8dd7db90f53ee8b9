"""The defaults the documentation promises for resumable uploads, idempotency keys and
batches, read off the settings and the CLI's own parser."""

from __future__ import annotations

from uploads_api.cli import build_parser
from uploads_api.config import Settings

MiB = 1024 * 1024


def test_server_defaults() -> None:
    settings = Settings()
    assert settings.tus_expiry == 24 * 3600
    assert settings.tus_max_open == 100
    assert settings.idempotency_ttl == 24 * 3600


def test_upload_command_defaults() -> None:
    options = build_parser().parse_args(["upload", "somewhere"])
    assert options.batch_files == 64
    assert options.batch_bytes == 8 * MiB
    assert options.resumable_threshold == 64 * MiB
    assert options.chunk_size == 8 * MiB
    assert options.parallel == 1
