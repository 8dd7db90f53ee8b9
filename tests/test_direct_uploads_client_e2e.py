"""Direct uploads end to end: a real server on S3 (moto's), the CLI as a subprocess and the
Python client; large files go straight to the bucket unless told not to, and small ones
and ``direct=False`` go through the API."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import AWS_ENV
from tests.conftest import ROOT, Server, ServerFactory
from tests.helpers import cli_env, sha256
from tests.service_fixtures import s3_client
from uploads_api.client import Client

MiB = 1024 * 1024
COMMAND = [sys.executable, "-m", "uploads_api.cli"]


@pytest.fixture(scope="module")
def s3_server(module_server_factory: ServerFactory, s3_endpoint: str) -> Server:
    """Direct uploads on (the default with S3), for files of 8 MiB and more, in 8 MiB parts."""
    bucket = f"direct-client-{secrets.token_hex(6)}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    return module_server_factory(
        extra_env=AWS_ENV,
        storage_url=f"s3://{bucket}/uploads",
        s3_endpoint_url=s3_endpoint,
        direct_upload_min_size=8 * MiB,
        direct_upload_part_size=8 * MiB,
    )


def counter(server: Server, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", httpx.get(f"{server.url}/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def received(server: Server) -> tuple[float, float]:
    """Bytes the API received in bodies; bytes of direct uploads it completed."""
    return counter(server, "uploads_bytes_total"), counter(server, "uploads_direct_bytes_total")


def random_file(folder: Path, name: str, size: int) -> tuple[Path, str]:
    path = folder / name
    data = os.urandom(size)
    path.write_bytes(data)
    return path, sha256(data)


@pytest.mark.e2e
def test_the_cli_sends_a_large_file_straight_to_s3_unless_told_not_to(
    s3_server: Server, tmp_path: Path
) -> None:
    path, digest = random_file(tmp_path, "large.bin", 40 * MiB)
    api_bytes, direct_bytes = received(s3_server)
    line, summary = upload_command(s3_server, path, "--wait")
    assert summary["uploaded"] == 1 and summary["ok"], summary
    assert (line["outcome"], line["status"], line["sha256"]) == ("uploaded", "ready", digest)
    assert line["record"]["checksum_verified"], "the server checked the hash the CLI sent"
    assert received(s3_server) == (api_bytes, direct_bytes + 40 * MiB), "no byte via the API"
    with Client(s3_server.url) as client:
        copy = tmp_path / "copy.bin"
        assert client.download(line["id"], copy) == 40 * MiB  # written only if the hash matches
    assert copy.read_bytes() == path.read_bytes()

    other, _ = random_file(tmp_path, "other.bin", 9 * MiB)
    line, _ = upload_command(s3_server, other, "--no-direct")
    assert line["outcome"] == "uploaded"
    assert received(s3_server) == (api_bytes + 9 * MiB, direct_bytes + 40 * MiB)


def upload_command(server: Server, path: Path, *flags: str) -> tuple[dict[str, Any], ...]:
    """``uploads-api upload PATH --json`` in a process; its file line and its summary."""
    run = subprocess.run(
        [*COMMAND, "upload", str(path), "--json", *flags, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=240,
        env=cli_env(),
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return tuple(json.loads(text) for text in run.stdout.splitlines())


@pytest.mark.e2e
def test_direct_false_and_small_files_go_through_the_api(s3_server: Server, tmp_path: Path) -> None:
    large, large_digest = random_file(tmp_path, "large.bin", 9 * MiB)
    small, _ = random_file(tmp_path, "small.bin", 2 * MiB)
    with Client(s3_server.url, direct=False) as client:
        before = received(s3_server)
        record = client.upload(large)
        assert received(s3_server) == (before[0] + 9 * MiB, before[1])
        assert record.sha256 == large_digest, "hashed by the API as it came"
    with Client(s3_server.url) as client:
        before = received(s3_server)
        client.upload(small)
        assert received(s3_server) == (before[0] + 2 * MiB, before[1])
        record = client.upload(large)
        assert received(s3_server) == (before[0] + 2 * MiB, before[1] + 9 * MiB)
        assert (record.status, record.sha256) == ("processing", None)
        ready = client.wait(record.id, timeout=60)
        assert (ready.status, ready.sha256) == ("ready", large_digest)
