"""Bodies take turns a chunk at a time (``UPLOADS_BODIES_AT_ONCE``), over real sockets: with
one turn, a stalled upload holds none, so other uploads and reads go on, and it completes
once it sends again; many uploads at once all complete, each byte for byte. Below HTTP: a
turn held through slow storage holds no other body back."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
from starlette.types import Message, Receive, Scope, Send

from tests.conftest import ServerFactory
from tests.helpers import request_head, wait_for
from uploads_api.body_turns import BodyTurns

HALF = 512 * 1024


def test_a_stalled_upload_holds_no_turn(server_factory: ServerFactory) -> None:
    server = server_factory(bodies_at_once=1)
    body = bytes(range(256)) * (2 * HALF // 256)
    head = request_head(
        "PUT", "/v1/files/stalled.bin", length=len(body), headers=("Connection: close",)
    )
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
        received = b""
        while piece := stalled.recv(65536):  # the answer, until the server closes
            received += piece
        answer = received.decode("latin-1")
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


def test_a_turn_held_through_slow_storage_holds_no_other_body_back() -> None:
    async def scenario() -> list[str]:
        storage_answers = asyncio.Event()
        done: list[str] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            while (await receive()).get("more_body"):
                if scope["path"] == "/slow":
                    await storage_answers.wait()  # an S3 part going up, holding the turn
            done.append(scope["path"])

        turns = BodyTurns(app, at_once=1)

        def chunks(count: int) -> Receive:
            messages = [{"type": "http.request", "body": b"x", "more_body": True}] * count
            messages.append({"type": "http.request", "body": b"x", "more_body": False})

            async def receive() -> Message:
                return messages.pop(0)

            return receive

        async def ignore(message: Message) -> None:
            pass

        def request(path: str) -> Scope:
            return {"type": "http", "method": "PUT", "path": path}

        slow = asyncio.create_task(turns(request("/slow"), chunks(2), ignore))
        await asyncio.sleep(0)  # the slow body takes the one turn and waits on storage
        await turns(request("/fast"), chunks(3), ignore)
        storage_answers.set()
        await slow
        return done

    assert asyncio.run(scenario()) == ["/fast", "/slow"]
