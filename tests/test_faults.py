"""Faults on the way in: clients that vanish or stall, a full disk, a server killed
mid-write, and a database that is locked for a moment. Nothing half-done may ever become
visible. Faults while files are processed: test_faults_processing.py."""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, ServerFactory
from tests.helpers import (
    MULTIPART_TYPE,
    Part,
    assert_healthy,
    assert_nothing_stored,
    assert_problem,
    exchange,
    file_part,
    held_by_another_process,
    multipart,
    request_head,
    sha256,
    wait_for,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def faulty(module_server_factory: ServerFactory) -> Server:
    return module_server_factory(body_timeout=2)


# Clients that vanish or stall ----------------------------------------------------------------

THREE_FILES = [secrets.token_bytes(3 * MiB) for _ in range(3)]
THREE_PARTS = [file_part(data, f"part{i}.bin") for i, data in enumerate(THREE_FILES)]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("cut", "writing"),
    [(2 * MiB, 1), (sum(len(p.encode()) for p in THREE_PARTS) - MiB, 3)],
    ids=["in-the-first-part", "in-the-last-part"],
)
def test_a_client_gone_mid_body_leaves_nothing(faulty: Server, cut: int, writing: int) -> None:
    body = multipart(*THREE_PARTS)
    sock = socket.create_connection(("127.0.0.1", faulty.port), timeout=10)
    try:
        sock.sendall(
            request_head("POST", "/v1/files", content_type=MULTIPART_TYPE, length=len(body))
        )
        for offset in range(0, cut, 256 * 1024):
            sock.sendall(body[offset : min(cut, offset + 256 * 1024)])
        # The server is mid-body: one temp file open per file part begun.
        wait_for(
            lambda: len(faulty.temp_files()) == writing,
            what=f"{writing} temp file(s) being written",
        )
    finally:
        sock.close()
    assert_nothing_stored(faulty)
    assert_healthy(faulty)


@pytest.mark.e2e
@pytest.mark.parametrize("route", ["multipart", "raw-put"])
def test_a_stalled_body_gets_408_and_its_temp_file_goes(faulty: Server, route: str) -> None:
    # Half of it is past the first write buffer (1 MiB), so a temp file is made.
    data = secrets.token_bytes(3 * MiB)
    if route == "multipart":
        body = multipart(file_part(data, "slow.bin"))
        head = request_head("POST", "/v1/files", content_type=MULTIPART_TYPE, length=len(body))
    else:
        body = data
        head = request_head(
            "PUT", "/v1/files/slow.bin", content_type="application/octet-stream", length=len(body)
        )
    seen_temp = False
    with ThreadPoolExecutor(1) as pool:
        # Half the body, then silence for longer than UPLOADS_BODY_TIMEOUT (2 s).
        answer = pool.submit(exchange, faulty, head, body[: len(body) // 2])
        while not answer.done():
            seen_temp = seen_temp or bool(faulty.temp_files())
            time.sleep(0.02)
        response = answer.result()
    assert seen_temp, "the stalled upload had a temp file open"
    assert_problem(response, 408, "body-timeout")
    assert response.elapsed < 5
    assert_nothing_stored(faulty)
    assert_healthy(faulty)


# A full disk ---------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs. Mounting needs root; CI runs as root, so there it must work."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {done.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.e2e
def test_a_full_disk_is_507_and_the_next_small_upload_works(
    tiny_disk: Path, tmp_path: Path
) -> None:
    # Only the blobs and temp files live on the small disk; the database does not.
    database = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    env = {"UPLOADS_DATABASE_URL": database}
    server = Server(tiny_disk, env, tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            too_big = secrets.token_bytes(10 * MiB)
            assert_problem(
                http.put("/v1/files/big.bin", content=too_big), 507, "insufficient-storage"
            )
            assert_nothing_stored(server)
            # Two files where only the first fits: neither is kept.
            both = http.post(
                "/v1/files",
                files=[("file", ("fits.bin", too_big[: 3 * MiB])), ("file", ("not.bin", too_big))],
            )
            assert_problem(both, 507, "insufficient-storage")
            assert_nothing_stored(server)
            small = b"still room for this"
            response = http.put("/v1/files/small.txt", content=small)
            assert response.status_code == 201, response.text
            assert http.get(response.json()["links"]["content"]).content == small
            assert server.temp_files() == []
            assert_healthy(server)
    finally:
        server.stop()


# Killed mid-write ----------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_server_killed_mid_upload_leaves_nothing_after_restart(server: Server) -> None:
    assert server.process is not None
    dead_pid = server.process.pid
    announced = 300 * 1024 * 1024
    head = request_head(
        "PUT", "/v1/files/huge.bin", content_type="application/octet-stream", length=announced
    )
    chunk = secrets.token_bytes(MiB)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(head)
        for _ in range(150):  # until bytes are on disk; well short of the 300 MiB announced
            sock.sendall(chunk)
            time.sleep(0.005)
            temps = server.temp_files()
            if temps and temps[0].stat().st_size > 0:
                break
        (temp,) = server.temp_files()
        assert temp.stat().st_size > 0
        server.kill()
    finally:
        sock.close()
    # Named after the writer that is now dead, so the start-up sweep may remove it at once.
    assert f"~{dead_pid}~" in temp.name
    assert temp.exists()
    server.start()
    wait_for(lambda: not temp.exists(), timeout=15, what="the start-up sweep")
    assert_nothing_stored(server)
    assert_healthy(server)


# A locked database ---------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("busy_timeout", "hold", "status"),
    [(1, 3.0, 503), (10, 1.0, 201)],
    ids=["locked-past-the-busy-timeout", "locked-within-the-busy-timeout"],
)
def test_a_locked_database(
    server_factory: ServerFactory, busy_timeout: int, hold: float, status: int
) -> None:
    server = server_factory(database_busy_timeout=busy_timeout)
    data = b"written while the database is locked\n" * 1000
    uploads: dict[str, Callable[[httpx.Client], httpx.Response]] = {
        "raw-put": lambda http: http.put("/v1/files/locked.txt", content=data),
        "multipart": lambda http: http.post(
            "/v1/files",
            content=multipart(Part("file", data, "locked.txt")),
            headers={"Content-Type": MULTIPART_TYPE},
        ),
    }
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for name, upload in uploads.items():
            lock = sqlite3.connect(
                server.data_dir / "uploads.db",
                timeout=30,
                isolation_level=None,
                check_same_thread=False,  # released from the timer thread below
            )
            lock.execute("BEGIN EXCLUSIVE")

            def release(lock: sqlite3.Connection = lock) -> None:
                time.sleep(hold)
                lock.execute("ROLLBACK")
                lock.close()

            releaser = threading.Thread(target=release)
            releaser.start()
            try:
                response = upload(http)
            finally:
                releaser.join()
            if status == 503:
                assert_problem(response, 503, "service-unavailable")
                # Answered after the busy timeout, while the lock was still held.
                assert response.elapsed.total_seconds() < hold
                assert_nothing_stored(server)
            else:
                assert response.status_code == 201, (name, response.text)
                body = response.json()
                (record,) = body.get("files", [body])
                # Never a 2xx without a record: it is there, with the bytes.
                stored = http.get(f"/v1/files/{record['id']}")
                assert stored.status_code == 200
                assert http.get(record["links"]["content"]).content == data
                assert record["sha256"] == sha256(data)
    assert server.temp_files() == []
    assert_healthy(server)


@pytest.mark.e2e
def test_any_route_answers_503_while_the_database_is_locked(server_factory: ServerFactory) -> None:
    server = server_factory(database_busy_timeout=1)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        created = http.put("/v1/files/kept.txt", content=b"kept\n")
        assert created.status_code == 201
        file_id = created.json()["id"]

        # SQLite's own lock, held by another program: a delete waits, then gives up.
        lock = sqlite3.connect(server.data_dir / "uploads.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            assert_problem(http.delete(f"/v1/files/{file_id}"), 503, "service-unavailable")
        finally:
            lock.execute("ROLLBACK")
            lock.close()

        # The writers' turn-taking lock, held by another server process that hangs.
        with held_by_another_process(server.data_dir / "uploads.db.writer-lock"):
            refused = http.put("/v1/files/late.txt", content=b"late\n")
            assert_problem(refused, 503, "service-unavailable")

        # Both gone: the same requests succeed, and nothing of the refused upload remains.
        assert http.delete(f"/v1/files/{file_id}").status_code == 204
        assert http.put("/v1/files/late.txt", content=b"late\n").status_code == 201
    assert server.temp_files() == []
    assert_healthy(server)
