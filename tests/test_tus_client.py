"""The CLI and the Python client send large files resumably (tus): in checksummed chunks,
and a run interrupted part-way is finished by the same command run again, from the
server's offset, not from zero."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.helpers import cli_env, resumable_audit, wait_done
from uploads_api.client import AsyncClient, Client, UploadsClientError
from uploads_api.client.resume_state import ResumeState

pytestmark = pytest.mark.e2e

TUS = {"Tus-Resumable": "1.0.0"}
MiB = 1024 * 1024


def cli_command(url: str, path: Path, *more: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uploads_api.cli",
        "upload",
        str(path),
        "--url",
        url,
        "--json",
        "--resumable-threshold",
        "1M",
        "--chunk-size",
        "1M",
        *more,
    ]


def test_the_cli_sends_a_large_file_resumably(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory()
    data = os.urandom(5 * MiB + 123)
    source = tmp_path / "large.bin"
    source.write_bytes(data)
    cache = tmp_path / "cache"
    run = subprocess.run(
        cli_command(server.url, source),
        env={**cli_env(), "XDG_CACHE_HOME": str(cache)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    line = json.loads(run.stdout.splitlines()[0])
    with httpx.Client(base_url=server.url, timeout=30) as http:
        record = wait_done(http, line["id"])
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert [e["file_id"] for e in resumable_audit(http)] == [line["id"]]
    # Finished uploads leave nothing to resume.
    assert json.loads((cache / "uploads-api" / "resumable.json").read_text()) == {}


def test_an_interrupted_cli_upload_goes_on_where_it_stopped(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory()
    data = os.urandom(40 * MiB)
    source = tmp_path / "video.bin"
    source.write_bytes(data)
    env = {**cli_env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    state = tmp_path / "cache" / "uploads-api" / "resumable.json"
    first = subprocess.Popen(
        cli_command(server.url, source),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = None
    offset = 0
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline and offset < 4 * MiB:
            time.sleep(0.05)
            if url is None and state.exists():
                stored = json.loads(state.read_text())
                url = json.loads(next(iter(stored.values())))[0] if stored else None
            if url is not None:
                offset = int(http.head(url, headers=TUS).headers.get("upload-offset", 0))
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
        assert url is not None and offset >= 4 * MiB
        stopped_at = int(http.head(url, headers=TUS).headers["upload-offset"])
    assert stopped_at < len(data), "the first run was to be interrupted before the end"
    second = subprocess.run(
        cli_command(server.url, source), env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    file_id = json.loads(second.stdout.splitlines()[0])["id"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        # The same upload finished: it answers with the file it became.
        assert http.head(url, headers=TUS).headers["file-id"] == file_id
        assert http.get(f"/v1/files/{file_id}/content").content == data


def test_the_python_client_sends_large_files_resumably(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory()
    data = os.urandom(3 * MiB)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    small = tmp_path / "small.bin"
    small.write_bytes(b"tiny")

    async def main() -> tuple[str, str]:
        async with AsyncClient(
            server.url,
            resumable_threshold=MiB,
            chunk_size=MiB,
            resume_state=tmp_path / "state.json",
        ) as client:
            large = await client.upload(source)
            plain = await client.upload(small)
            return large.id, plain.id

    large_id, small_id = asyncio.run(main())
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert wait_done(http, large_id)["sha256"] == hashlib.sha256(data).hexdigest()
        assert [e["file_id"] for e in resumable_audit(http)] == [large_id]
        assert small_id != large_id
    assert ResumeState(tmp_path / "state.json").get("anything") is None


def test_parallel_pieces_are_joined_and_resumed(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """--parallel 4: four partial uploads at once, joined by the server; interrupted, the
    same command resumes each piece from its own offset."""
    server = server_factory()
    data = os.urandom(24 * MiB + 3)
    source = tmp_path / "four.bin"
    source.write_bytes(data)
    env = {**cli_env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    state = tmp_path / "cache" / "uploads-api" / "resumable.json"
    command = cli_command(server.url, source, "--parallel", "4")
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    urls: list[str] = []
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if not urls and state.exists():
                stored = json.loads(state.read_text())
                urls = json.loads(next(iter(stored.values()))) if stored else []
            if (
                urls
                and sum(int(http.head(u, headers=TUS).headers["upload-offset"]) for u in urls)
                >= 4 * MiB
            ):
                break
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
        assert len(urls) == 4
        assert all(http.head(u, headers=TUS).headers["upload-concat"] == "partial" for u in urls)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    file_id = json.loads(second.stdout.splitlines()[0])["id"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(f"/v1/files/{file_id}/content").content == data
        assert wait_done(http, file_id)["sha256"] == hashlib.sha256(data).hexdigest()


def test_the_blocking_client_sends_large_files_resumably(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory()
    data = os.urandom(3 * MiB + 1)
    source = tmp_path / "b.bin"
    source.write_bytes(data)
    seen: list[int] = []
    with Client(
        server.url, resumable_threshold=MiB, chunk_size=MiB, resume_state=tmp_path / "s.json"
    ) as client:
        record = client.upload(source, progress=seen.append)
    assert seen[-1] == len(data)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert wait_done(http, record.id)["sha256"] == hashlib.sha256(data).hexdigest()
        assert [e["file_id"] for e in resumable_audit(http)] == [record.id]


def test_one_upload_asks_for_tus_or_declines_it(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory()
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(1000))
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(2 * MiB))
    state = tmp_path / "state.json"
    with Client(server.url, resumable_threshold=MiB, chunk_size=MiB, resume_state=state) as client:
        forced = client.upload(small, resumable=True)
        declined = client.upload(large, resumable=False)
        with pytest.raises(UploadsClientError, match="only a file on disk"):
            client.upload(b"in memory", "memory.bin", resumable=True)
    with Client(server.url, resumable=False) as client, pytest.raises(UploadsClientError):
        client.upload(small, resumable=True)

    async def main() -> str:
        async with AsyncClient(server.url, resume_state=state) as client:
            return (await client.upload(small, "again.bin", resumable=True)).id

    forced_async = asyncio.run(main())
    with httpx.Client(base_url=server.url, timeout=30) as http:
        deadline = time.monotonic() + 10  # audit rows are written in batches
        while len(found := resumable_audit(http)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sorted(e["file_id"] for e in found) == sorted([forced.id, forced_async])
        assert wait_done(http, declined.id)["size"] == 2 * MiB


def test_the_python_client_sends_one_file_as_parallel_pieces(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory()
    data = os.urandom(3 * MiB + 7)
    source = tmp_path / "three.bin"
    source.write_bytes(data)

    async def main() -> str:
        async with AsyncClient(
            server.url,
            resumable_threshold=MiB,
            chunk_size=MiB,
            parallel=3,
            resume_state=tmp_path / "state.json",
        ) as client:
            return (await client.upload(source)).id

    file_id = asyncio.run(main())
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(f"/v1/files/{file_id}/content").content == data
        assert wait_done(http, file_id)["sha256"] == hashlib.sha256(data).hexdigest()
    # Three partial uploads and the final one that joined them.
    assert server.logs().count("POST /v1/tus/ ") == 4, server.logs()[-3000:]
