"""Bodies take turns a chunk at a time (``UPLOADS_BODIES_AT_ONCE``), over real sockets: with
one turn, a stalled upload holds none, so other uploads and reads go on, and it completes
once it sends again; many uploads at once all complete, each byte for byte."""

from __future__ import annotations

import hashlib
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import ServerFactory
from tests.helpers import request_head, wait_for

HALF = 512 * 1024


def test_a_stalled_upload_holds_no_turn(server_factory: ServerFactory) -> None:
    server = server_factory(bodies_at_once=1)
    body = bytes(range(256)) * (2 * HALF // 256)
    head = request_head("PUT", "/v1/files/stalled.bin", length=len(body))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as stalled:
        stalled.sendall(head + body[:HALF])  # and then nothing, for now
        with httpx.Client(base_url=server.url, timeout=10) as client:
            wait_for(
                lambda: "uploads_in_progress 1.0" in client.get("/metrics").text,
                what="the stalled upload to be open",
            )
            other = client.put("/v1/files/other.bin", content=body)
            assert other.status_code == 201, other.text
            assert other.json()["sha256"] == hashlib.sha256(body).hexdigest()
            assert client.get("/healthz").status_code == 200
        stalled.sendall(body[HALF:])
        answer = stalled.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.1 201"), answer[:200]
    assert hashlib.sha256(body).hexdigest() in answer


def test_many_uploads_at_once_all_complete(server_factory: ServerFactory) -> None:
    server = server_factory(bodies_at_once=2)
    bodies = [bytes([i]) * (HALF + i * 4099) for i in range(24)]

    def send(index: int) -> tuple[int, str]:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answer = client.put(f"/v1/files/{index}.bin", content=bodies[index])
            return answer.status_code, answer.json()["sha256"]

    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(send, range(len(bodies))))
    assert answers == [(201, hashlib.sha256(body).hexdigest()) for body in bodies]
