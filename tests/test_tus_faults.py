"""Resumable uploads when things go wrong: a server killed in the middle of a PATCH keeps a
true prefix; two API processes (PostgreSQL and S3 between them) take turns on one upload
and refuse a second writer with 423; an expired upload gives its quota back."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster import AWS_ENV, ClusterConfig, Worker
from tests.conftest import ServerFactory
from tests.helpers import assert_problem, sweep, wait_done
from tests.service_fixtures import s3_client

pytestmark = pytest.mark.e2e

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}
MiB = 1024 * 1024


def create(http: httpx.Client, base: str, length: int) -> str:
    answer = http.post(f"{base}/v1/tus/", headers={**TUS, "Upload-Length": str(length)})
    assert answer.status_code == 201, answer.text
    return str(httpx.URL(base).join(answer.headers["location"]))


def patch(http: httpx.Client, url: str, offset: int, data: bytes) -> httpx.Response:
    return http.patch(url, content=data, headers={**CHUNK, "Upload-Offset": str(offset)})


def offset_of(http: httpx.Client, url: str) -> int:
    return int(http.head(url, headers=TUS).headers["upload-offset"])


def test_a_kill_mid_patch_leaves_a_true_prefix(server_factory: ServerFactory) -> None:
    server = server_factory()
    data = os.urandom(12 * MiB)
    sent = threading.Event()

    def body() -> Iterator[bytes]:
        for start in range(0, 6 * MiB, 256 * 1024):
            yield data[start : start + 256 * 1024]
        sent.set()
        time.sleep(30)  # the server is killed while it waits for the rest
        yield data[6 * MiB :]

    with httpx.Client(timeout=60) as http:
        url = create(http, server.url, len(data))

        def send() -> None:
            with httpx.Client(timeout=60) as writer, contextlib.suppress(httpx.HTTPError):
                patch(writer, url, 0, body())  # type: ignore[arg-type]

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        assert sent.wait(30)
        time.sleep(0.3)
        server.kill()
        server.start()
        offset = offset_of(http, url)
        # Nothing was acknowledged, so 0 is a right answer; whatever it is, it is a prefix.
        assert 0 <= offset <= 6 * MiB
        # The lease of the killed writer lapses; then the rest goes up from the offset.
        deadline = time.monotonic() + 30
        while True:
            answer = patch(http, url, offset, data[offset:])
            if answer.status_code != 423 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert answer.status_code == 204, answer.text
        file_id = answer.headers["file-id"]
        with httpx.Client(base_url=server.url, timeout=60) as api:
            record = wait_done(api, file_id)
            assert record["sha256"] == hashlib.sha256(data).hexdigest()
            # Each of the file's tasks ran once.
            assert all(task["attempts"] <= 1 for task in record["tasks"])


def test_two_api_processes_take_turns_on_one_upload(
    request: pytest.FixtureRequest,
    server_factory: ServerFactory,
    s3_endpoint: str,
    tmp_path: Path,
) -> None:
    """The scale-out stack: PostgreSQL, S3, a Celery worker over Redis, two API processes
    that share nothing else; chunks of one upload alternate between them."""
    bucket = f"tus-{secrets.token_hex(6)}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    config = ClusterConfig(
        database_url=request.getfixturevalue("postgres_url"),
        storage_url=f"s3://{bucket}/tus",
        s3_endpoint=s3_endpoint,
        broker_url=request.getfixturevalue("redis_url") + "/0",
    )
    worker = Worker(config, tmp_path / "worker", tmp_path / "worker.log", beat=False)
    worker.start()
    request.addfinalizer(worker.stop)
    shared = config.settings()
    first = server_factory(extra_env=AWS_ENV, **shared)
    second = server_factory(extra_env=AWS_ENV, **shared)
    data = os.urandom(20 * MiB + 77)
    pieces = [(0, 3 * MiB), (3 * MiB, 11 * MiB), (11 * MiB, 12 * MiB), (12 * MiB, len(data))]
    with httpx.Client(timeout=60) as http:
        url = create(http, first.url, len(data))
        path = url.split("/v1/tus/", 1)[1]
        for turn, (start, end) in enumerate(pieces):
            server = (first, second)[turn % 2]
            answer = patch(http, f"{server.url}/v1/tus/{path}", start, data[start:end])
            assert answer.status_code == 204, answer.text
            assert offset_of(http, f"{(second, first)[turn % 2].url}/v1/tus/{path}") == end
        file_id = answer.headers["file-id"]
    with httpx.Client(base_url=second.url, timeout=60) as api:
        assert wait_done(api, file_id)["sha256"] == hashlib.sha256(data).hexdigest()
        assert api.get(f"/v1/files/{file_id}/content").content == data

    # A writer on one process holds the upload against the other.
    release = threading.Event()

    def slow() -> Iterator[bytes]:
        yield b"a" * 1000
        release.wait(10)
        yield b"b" * 1000

    with httpx.Client(timeout=60) as http:
        url = create(http, first.url, 10_000)
        path = url.split("/v1/tus/", 1)[1]
        results: dict[str, int] = {}

        def write() -> None:
            with httpx.Client(timeout=60) as writer:
                answer = patch(writer, f"{first.url}/v1/tus/{path}", 0, slow())  # type: ignore[arg-type]
                results["first"] = answer.status_code

        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(0.5)
        other = patch(http, f"{second.url}/v1/tus/{path}", 0, b"c")
        release.set()
        thread.join(20)
        assert_problem(other, 423, "upload-locked")
        assert results == {"first": 204}
        assert offset_of(http, f"{second.url}/v1/tus/{path}") == 2000


def test_an_expired_upload_gives_its_quota_back(server_factory: ServerFactory) -> None:
    server = server_factory(quota_bytes=1000, tus_expiry=1)
    with httpx.Client(timeout=30) as http:
        create(http, server.url, 900)
        refused = http.put(f"{server.url}/v1/files/a.bin", content=b"z" * 300)
        assert_problem(refused, 413, "quota-exceeded")
        time.sleep(1.5)
        sweep(server.data_dir, {"UPLOADS_TUS_EXPIRY": "1"})
        assert http.put(f"{server.url}/v1/files/a.bin", content=b"z" * 300).status_code == 201
