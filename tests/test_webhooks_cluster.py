"""Webhooks on the scale-out stack (Celery workers, PostgreSQL, Redis, S3): the workers
send them, and a worker killed while a delivery is in flight leaves it to the next one."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.cluster import AWS_ENV, ClusterConfig, Worker
from tests.conftest import ServerFactory
from tests.webhook_receiver import receiver

pytestmark = pytest.mark.e2e

HOOKED_ENV = {
    "UPLOADS_WEBHOOK_ALLOW_PRIVATE": "true",
    "UPLOADS_WEBHOOK_RETRY_SCHEDULE": "0.3,0.3,0.6",
    "UPLOADS_WEBHOOK_TIMEOUT": "2",
}


def test_a_worker_killed_mid_delivery_leaves_it_to_the_next(
    server_factory: ServerFactory,
    tmp_path: Path,
    postgres_url: str,
    s3_bucket: str,
    s3_endpoint: str,
    redis_url: str,
) -> None:
    config = ClusterConfig(
        database_url=postgres_url,
        storage_url=f"s3://{s3_bucket}/uploads",
        s3_endpoint=s3_endpoint,
        broker_url=redis_url + "/0",
    )
    release = threading.Event()

    def answer(n: int) -> int:
        if n == 0:
            release.wait(30)  # the first attempt hangs until its worker is dead
        return 200

    worker = Worker(config, tmp_path / "worker", tmp_path / "worker.log", beat=True)
    worker.env = {**worker.env, **HOOKED_ENV}
    worker.start()
    try:
        with receiver() as hook:
            hook.answer = answer
            server = server_factory(extra_env={**AWS_ENV, **HOOKED_ENV}, **config.settings())
            with httpx.Client(base_url=server.url, timeout=30) as http:
                created = http.post("/v1/webhooks", json={"url": hook.url})
                assert created.status_code == 201, created.text
                hook.secret = created.json()["secret"]
                response = http.post(
                    "/v1/files", files={"file": ("a.txt", b"to the cluster", "text/plain")}
                )
                assert response.status_code == 201, response.text
                file_id = response.json()["files"][0]["id"]
                hook.wait_for(1)  # a worker is sending it, and hangs
                worker.kill()
                release.set()
                worker.start()
                # file.created sent again (the same webhook-id), and file.ready.
                hook.wait_for(3, timeout=90)
                kinds = [r.payload["type"] for r in hook.received]
                assert sorted(set(kinds)) == ["file.created", "file.ready"]
                created_ids = {r.headers["webhook-id"] for r in hook.of_type("file.created")}
                assert len(created_ids) == 1
                assert all(r.verified for r in hook.received)
                assert all(r.payload["data"]["id"] == file_id for r in hook.received)
    finally:
        worker.stop()
