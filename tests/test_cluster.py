"""The cluster, on one machine: PostgreSQL, Redis, an S3 server, two API processes and two
Celery workers. 500 uploads from 16 clients; one worker is killed half-way and started
again. Every acknowledged upload must end processed, once, with nothing left behind.

500 is enough for what is under test: the workers fall minutes behind the uploads on two
cores, so the worker dies with a queue full of tasks and comes back while uploads still
arrive (``CLUSTER_UPLOADS`` sets more)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests import imagegen
from tests.cluster import AWS_ENV, ClusterConfig, Worker
from tests.conftest import ServerFactory
from tests.service_fixtures import s3_client

# Hundreds of uploads through two APIs and two workers on two cores: give it room.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

UPLOADS = int(os.environ.get("CLUSTER_UPLOADS", "500"))
CLIENTS = 16


def make_payloads(tmp_path: Path) -> list[tuple[str, bytes]]:
    bases = [
        imagegen.jpeg_photo(tmp_path / f"b{i}", size=(320, 240)).read_bytes() for i in range(20)
    ]
    pdf = imagegen.pdf_file(tmp_path, pages=2).read_bytes()
    payloads = []
    for n in range(UPLOADS):
        # Bytes after the end marker make each file unique; decoders ignore them.
        if n % 2 == 0:
            payloads.append((f"photo-{n}.jpg", bases[n % len(bases)] + os.urandom(16)))
        elif n % 4 == 1:
            payloads.append((f"doc-{n}.pdf", pdf + b"\n" + os.urandom(16).hex().encode()))
        else:
            payloads.append((f"note-{n}.txt", f"note {n} {os.urandom(8).hex()}\n".encode() * 20))
    return payloads


# Tasks with no work for a type are recorded settled at upload, with no attempt.
SETTLED_AT_UPLOAD: dict[str, set[str]] = {
    ".jpg": set(),
    ".pdf": set(),  # its first page becomes the thumbnails
    ".txt": {"metadata", "thumbnails", "cleanup"},
}


def test_cluster_survives_a_killed_worker(
    request: pytest.FixtureRequest, server_factory: ServerFactory, tmp_path: Path
) -> None:
    bucket = request.getfixturevalue("s3_bucket")
    config = ClusterConfig(
        database_url=request.getfixturevalue("postgres_url"),
        storage_url=f"s3://{bucket}/cluster",
        s3_endpoint=request.getfixturevalue("s3_endpoint"),
        broker_url=request.getfixturevalue("redis_url") + "/0",
        # The uploads' tasks are a backlog of minutes, which the reconciler (after 3 s,
        # every 5 s) leaves alone: it publishes only as many rows as the broker is short
        # of messages, such as the killed worker's, their leases lapsed.
    )
    workers = [
        Worker(config, tmp_path / f"worker{i}", tmp_path / f"worker{i}.log", beat=i == 0)
        for i in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        apis = [server_factory(extra_env=AWS_ENV, **config.settings()) for _ in range(2)]
        payloads = make_payloads(tmp_path)
        started = time.monotonic()
        acknowledged: dict[str, tuple[str, str]] = {}  # id: (sha256, suffix)
        lock = threading.Lock()
        sent = Counter[str]()

        def send(index: int) -> int:
            """Uploads one payload; the status it was answered with."""
            name, body = payloads[index]
            api = apis[index % 2]
            with httpx.Client(base_url=api.url, timeout=60) as client:
                response = client.post("/v1/files", files={"file": (name, body)})
            with lock:
                sent[str(response.status_code)] += 1
                if response.status_code == 201:
                    (record,) = response.json()["files"]
                    acknowledged[record["id"]] = (
                        hashlib.sha256(body).hexdigest(),
                        Path(name).suffix,
                    )
            return response.status_code

        with ThreadPoolExecutor(CLIENTS) as pool:
            first_half = list(pool.map(send, range(UPLOADS // 2)))
            workers[1].kill()
            rest = pool.map(send, range(UPLOADS // 2, UPLOADS))
            time.sleep(2)
            workers[1].start()
            list(rest)
        # Every upload sent before the kill was acknowledged: the worker died with their
        # tasks in the queue, and below each must still end processed, once.
        assert first_half == [201] * (UPLOADS // 2), Counter(first_half)
        assert sent == Counter({"201": UPLOADS}), sent
        print(f"uploads done at {time.monotonic() - started:.1f}s")

        with httpx.Client(base_url=apis[0].url, timeout=60) as client:
            deadline = time.monotonic() + 900
            while stuck := client.get("/v1/files", params={"status": "processing"}).json()["files"]:
                assert time.monotonic() < deadline, f"processing did not finish: {stuck[:2]}"
                time.sleep(1)
            print(f"processing done at {time.monotonic() - started:.1f}s")
            records = {}
            cursor = None
            while True:
                page = client.get(
                    "/v1/files", params={"limit": 500, **({"cursor": cursor} if cursor else {})}
                ).json()
                records.update({r["id"]: r for r in page["files"]})
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert set(records) == set(acknowledged)
            for file_id, (digest, suffix) in acknowledged.items():
                record = records[file_id]
                assert record["sha256"] == digest
                assert record["status"] == "ready", record
                assert all(t["state"] in ("succeeded", "skipped") for t in record["tasks"])
                ran = [t for t in record["tasks"] if t["name"] not in SETTLED_AT_UPLOAD[suffix]]
                assert all(1 <= t["attempts"] <= 3 for t in ran), record["tasks"]
                if suffix == ".pdf":
                    assert record["metadata"]["pdf"]["pages"] == 2, record["metadata"]
                if suffix == ".jpg":
                    sizes = [t["size"] for t in record["thumbnails"]]
                    assert sorted(sizes) == [256, 1024], "no duplicate thumbnails"
            for file_id in list(acknowledged)[::25]:
                body = client.get(f"/v1/files/{file_id}/content").content
                assert hashlib.sha256(body).hexdigest() == acknowledged[file_id][0]

        s3 = s3_client(config.s3_endpoint)
        objects: dict[str, int] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            objects.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
        originals = {k.rsplit("/", 1)[1] for k in objects if k.startswith("cluster/originals/")}
        assert originals == set(acknowledged), "every acknowledged upload is in S3"
        thumbnails = Counter(
            k.split("/")[3] for k in objects if k.startswith("cluster/thumbnails/")
        )
        # Photos and PDFs (their first page) have thumbnails; text has none.
        previewed = {f for f, (_d, suffix) in acknowledged.items() if suffix in (".jpg", ".pdf")}
        assert set(thumbnails) == previewed
        assert set(thumbnails.values()) == {2}
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        for api in apis:
            assert api.temp_files() == []
        leftovers = [p for w in workers for p in (w.data_dir / "tmp" / "work").glob("*")]
        assert leftovers == [], "every file's scratch space was cleaned up"
        assert "uploads.run_task" in workers[1].logs()
    finally:
        for worker in workers:
            worker.stop()
