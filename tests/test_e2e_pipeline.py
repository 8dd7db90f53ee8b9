"""End to end: the background pipeline on real images, and what happens when things go wrong."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests import imagegen
from tests.conftest import Server, ServerFactory
from tests.helpers import task_of, upload, wait_done, wait_for

pytestmark = pytest.mark.e2e


def test_oversized_file_gets_413_and_leaves_nothing(server_factory: ServerFactory) -> None:
    server = server_factory(max_file_size=1024 * 1024)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        small = ("file", ("ok.bin", b"x" * 1000))
        big = ("file", ("big.bin", os.urandom(3 * 1024 * 1024)))
        response = client.post("/v1/files", files=[small, big])
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "file-too-large"
        raw = client.put("/v1/files/big.bin", content=os.urandom(2 * 1024 * 1024))
        assert raw.status_code == 413
        assert client.get("/v1/files").json()["files"] == [], "no record, not even the small file"
        assert server.temp_files() == []
        assert not [p for p in (server.data_dir / "blobs").rglob("*") if p.is_file()]
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("multipart/form-data", b"--x\r\n", 400),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
            422,
        ),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data; name=f; filename=a.txt\r\n\r\nabc",
            400,
        ),
        ("multipart/form-data; boundary=x", b"garbage", 400),
        ("text/plain", b"hello", 415),
    ],
)
def test_malformed_bodies_are_refused(
    shared_client: httpx.Client, shared_server: Server, content_type: str, body: bytes, status: int
) -> None:
    # One server for the refusals and the disconnects below: none of them may store
    # anything, so each still finds the server empty.
    client, server = shared_client, shared_server
    response = client.post("/v1/files", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert server.temp_files() == []
    assert client.get("/v1/files").json()["files"] == []


def test_too_many_files_is_refused(server_factory: ServerFactory) -> None:
    server = server_factory(max_files_per_request=3)
    with httpx.Client(base_url=server.url) as client:
        files = [("file", (f"{i}.txt", b"x")) for i in range(4)]
        response = client.post("/v1/files", files=files)
        assert response.status_code == 400
        assert response.json()["code"] == "too-many-parts"
        assert client.get("/v1/files").json()["files"] == []
        assert server.temp_files() == []


@pytest.mark.parametrize("route", ["multipart", "raw"])
def test_client_disconnect_midway_leaves_nothing(shared_server: Server, route: str) -> None:
    server = shared_server
    total = 8 * 1024 * 1024
    if route == "multipart":
        head = b"--b\r\nContent-Disposition: form-data; name=file; filename=a.bin\r\n\r\n"
        request = (
            b"POST /v1/files HTTP/1.1\r\nHost: x\r\n"
            + b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {total}\r\n\r\n".encode()
            + head
        )
    else:
        request = (
            f"PUT /v1/files/a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n".encode()
        )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        sock.sendall(os.urandom(3 * 1024 * 1024))
        wait_for(lambda: server.temp_files() != [], timeout=10, what="a temp file")
    wait_for(lambda: server.temp_files() == [], timeout=10, what="the temp file to go")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v1/files").json()["files"] == []
        assert client.get("/healthz").status_code == 200


def test_killed_server_finishes_every_acknowledged_upload(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    # Slow the pipeline down (one image worker, one task at a time) so work is left queued.
    server = server_factory(task_concurrency=1, image_workers=1)
    photos = [imagegen.jpeg_photo(tmp_path / str(i), size=(2400, 1800)) for i in range(6)]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        acknowledged = [r["id"] for r in upload(client, *photos)]
        acknowledged.append(client.put("/v1/files/extra.txt", content=b"text").json()["id"])
    server.kill()
    server.start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for file_id in acknowledged:
            record = wait_done(client, file_id, timeout=60)
            assert record["status"] == "ready", record
            for t in record["tasks"]:
                assert t["state"] in ("succeeded", "skipped")
        assert len(client.get("/v1/files").json()["files"]) == len(acknowledged)


def test_failing_task_is_retried_then_marked_failed(
    client: httpx.Client, server: Server, tmp_path: Path
) -> None:
    # A file where the thumbnails folder must go: every write of a thumbnail fails (OSError).
    blocker = server.data_dir / "blobs" / "thumbnails"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"not a directory")
    (record,) = upload(client, imagegen.jpeg_photo(tmp_path, size=(400, 300)))
    record = wait_done(client, record["id"])
    thumbs = task_of(record, "thumbnails")
    assert record["status"] == "failed"
    assert thumbs["state"] == "failed"
    assert thumbs["attempts"] == 3
    assert "Error" in thumbs["error"]
    assert task_of(record, "metadata")["state"] == "succeeded"
    # Fixed, then retried through the API: the file ends ready.
    blocker.unlink()
    retried = client.post(f"/v1/files/{record['id']}/retry")
    assert retried.status_code == 200
    record = wait_done(client, record["id"])
    assert record["status"] == "ready"
    assert task_of(record, "thumbnails")["attempts"] == 1


def test_sweep_removes_stale_temp_files_and_orphans(server_factory: ServerFactory) -> None:
    server = server_factory(sweep_interval=0.5, temp_ttl=60)
    tmp = server.data_dir / "tmp"
    stale = tmp / "abandoned.part"
    fresh = tmp / "inflight.part"
    orphan = server.data_dir / "blobs" / "originals" / "ab" / ("ab" + "0" * 30)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    for path in (stale, fresh, orphan):
        path.write_bytes(b"x" * 100)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(orphan, (old, old))
    wait_for(lambda: not stale.exists() and not orphan.exists(), timeout=15, what="the sweep")
    assert fresh.exists(), "a temp file younger than the TTL is left alone"
