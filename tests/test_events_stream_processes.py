"""``GET /v1/events`` across processes: a stream gets the events another server on the same
data dir committed, and those a Celery worker committed in the cluster mode (PostgreSQL,
S3, Redis). Every read has a timeout, so no test can hang.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests import imagegen
from tests.cluster import AWS_ENV, ClusterConfig, Worker
from tests.conftest import Server, ServerFactory
from tests.event_stream_helpers import kinds, open_stream, upload

pytestmark = pytest.mark.e2e


@contextmanager
def servers_on_one_data_dir(tmp_path: Path, *settings: dict[str, str]) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for index, extra in enumerate(settings):
            env = {f"UPLOADS_{k.upper()}": v for k, v in extra.items()}
            server = Server(tmp_path / "data", env, tmp_path / f"server{index}.log")
            started.append(server)
            server.start()
        yield started
    finally:
        for server in started:
            server.stop()


def test_events_committed_by_another_process_arrive(tmp_path: Path) -> None:
    """Two servers on one data dir, one of them with two worker processes: a stream on
    either gets what the other committed, within the poll interval."""
    with servers_on_one_data_dir(tmp_path, {}, {"workers": "2"}) as (single, pair):
        streams = [open_stream(single), open_stream(pair), open_stream(pair)]
        with streams[0] as here, streams[1] as there, streams[2] as third:
            started = time.monotonic()
            from_single = upload(single, name="from-single.txt")
            from_pair = upload(pair, name="from-pair.txt")
            mine = {from_single, from_pair}
            for stream in (here, there, third):
                assert kinds(stream.events(4, files=mine)) == [
                    (from_single, "file.created"),
                    (from_single, "file.ready"),
                    (from_pair, "file.created"),
                    (from_pair, "file.ready"),
                ]
            assert time.monotonic() - started < 5


@pytest.mark.slow
def test_events_a_celery_worker_commits_reach_the_api_servers_streams(
    server_factory: ServerFactory,
    tmp_path: Path,
    postgres_url: str,
    s3_bucket: str,
    s3_endpoint: str,
    redis_url: str,
) -> None:
    """The cluster mode: PostgreSQL, S3, Redis. The API commits file.created, a Celery
    worker file.ready; both reach a stream on the API server, and a resumed one."""
    config = ClusterConfig(
        database_url=postgres_url,
        storage_url=f"s3://{s3_bucket}/uploads",
        s3_endpoint=s3_endpoint,
        broker_url=redis_url + "/0",
    )
    worker = Worker(config, tmp_path / "worker", tmp_path / "worker.log", beat=False)
    worker.start()
    try:
        server = server_factory(extra_env=AWS_ENV, **config.settings())
        photo = imagegen.jpeg_photo(tmp_path, size=(640, 480))
        with open_stream(server) as stream:
            sent = httpx.post(
                f"{server.url}/v1/files",
                files={"file": (photo.name, photo.read_bytes())},
                timeout=30,
            )
            assert sent.status_code == 201, sent.text
            file_id = sent.json()["files"][0]["id"]
            created, ready = stream.events(2, files={file_id})
        assert (created.event, ready.event) == ("file.created", "file.ready")
        assert ready.payload["data"]["thumbnails"], "the worker made them"
        assert "uploads.run_task" in worker.logs()
        with open_stream(
            server, headers={"Last-Event-ID": created.id}, params={"wait": 0}
        ) as again:
            assert [f.id for f in again.rest() if not f.is_comment] == [ready.id]
    finally:
        worker.stop()
