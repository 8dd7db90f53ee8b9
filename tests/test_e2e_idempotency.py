"""End to end: ``Idempotency-Key`` on ``POST /v1/files`` and ``PUT /v1/files/{name}``
against real servers: the first answer replayed, a key reused for other files refused, a
key in use refused until its request ends, a refused or killed request's key freed, keys
expiring and swept."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import ROOT, Server, ServerFactory
from tests.helpers import assert_problem, bearer, cli_env, create_keys, sha256, wait_closed

pytestmark = pytest.mark.e2e

MAX_FILE_SIZE = 100_000
KEY = "Idempotency-Key"


@dataclass(frozen=True)
class Live:
    server: Server
    keys: dict[str, str]

    def client(self, owner: str = "alice") -> httpx.Client:
        headers = bearer(self.keys[owner])
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30)

    def metric(self, name: str) -> float:
        with self.client() as client:
            text = client.get("/metrics").text
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def live(module_server_factory: ServerFactory) -> Live:
    server = module_server_factory(max_file_size=MAX_FILE_SIZE)
    keys = create_keys(server.data_dir, "alice", "bob")
    wait_closed(server)
    return Live(server, keys)


def files_of(*blobs: bytes) -> list[tuple[str, tuple[str, bytes]]]:
    return [("file", (f"f{i}.bin", blob)) for i, blob in enumerate(blobs)]


def stored(client: httpx.Client, blob: bytes) -> int:
    """How many records the caller has of these bytes."""
    return len(client.get("/v1/files", params={"sha256": sha256(blob)}).json()["files"])


def test_a_retry_with_the_same_key_gets_the_first_answer(live: Live) -> None:
    blobs = [os.urandom(3000) for _ in range(3)]
    replays = live.metric("uploads_idempotent_replays_total")
    with live.client() as client:
        first = client.post("/v1/files", files=files_of(*blobs), headers={KEY: "batch-1"})
        assert first.status_code == 201, first.text
        assert "idempotent-replayed" not in first.headers
        for key in ("batch-1", '"batch-1"'):  # bare, or quoted as the draft standard has it
            again = client.post("/v1/files", files=files_of(*blobs), headers={KEY: key})
            assert again.status_code == 201, again.text
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json() == first.json()
        assert [stored(client, blob) for blob in blobs] == [1, 1, 1]
    assert live.metric("uploads_idempotent_replays_total") == replays + 2


def test_the_same_key_with_other_files_is_refused(live: Live) -> None:
    blob = os.urandom(2000)
    with live.client() as client:
        assert client.post("/v1/files", files=files_of(blob), headers={KEY: "k-2"}).is_success
        other = [
            files_of(os.urandom(2000)),  # other bytes
            [("file", ("renamed.bin", blob))],  # another name
            files_of(blob, blob),  # another file
        ]
        for files in other:
            refused = client.post("/v1/files", files=files, headers={KEY: "k-2"})
            assert_problem(refused, 422, "idempotency-key-reused")
        put = client.put("/v1/files/f0.bin", content=blob, headers={KEY: "k-2"})
        assert_problem(put, 422, "idempotency-key-reused")
        assert stored(client, blob) == 1
    with live.client("bob") as client:
        answer = client.post("/v1/files", files=files_of(blob), headers={KEY: "k-2"})
        assert answer.status_code == 201, "keys are per owner"
        assert "idempotent-replayed" not in answer.headers


def test_a_retry_is_not_answered_for_files_deleted_since(live: Live) -> None:
    blobs = [os.urandom(1500) for _ in range(2)]
    with live.client() as client:
        first = client.post("/v1/files", files=files_of(*blobs), headers={KEY: "k-gone"})
        assert first.status_code == 201
        assert client.delete(f"/v1/files/{first.json()['files'][1]['id']}").status_code == 204
        again = client.post("/v1/files", files=files_of(*blobs), headers={KEY: "k-gone"})
        assert_problem(again, 410, "idempotent-files-deleted")
        assert [stored(client, blob) for blob in blobs] == [1, 0], "nothing stored again"


def test_a_put_is_replayed_with_its_location(live: Live) -> None:
    blob = os.urandom(5000)
    with live.client() as client:
        first = client.put("/v1/files/a.bin", content=blob, headers={KEY: "put-1"})
        assert first.status_code == 201
        again = client.put("/v1/files/a.bin", content=blob, headers={KEY: "put-1"})
        assert (again.status_code, again.headers["idempotent-replayed"]) == (201, "true")
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
        assert stored(client, blob) == 1


def test_a_refused_request_frees_its_key(live: Live) -> None:
    small, big = os.urandom(1000), os.urandom(MAX_FILE_SIZE + 1)
    with live.client() as client:
        refused = client.post("/v1/files", files=files_of(small, big), headers={KEY: "k-4"})
        problem = assert_problem(refused, 413, "file-too-large")
        assert (problem["part"], problem["filename"]) == (1, "f1.bin")
        sent = client.post("/v1/files", files=files_of(small), headers={KEY: "k-4"})
        assert sent.status_code == 201 and "idempotent-replayed" not in sent.headers
        assert stored(client, small) == 1


def slow_body(head: bytes, rest: bytes, pause: float) -> Iterator[bytes]:
    yield head
    time.sleep(pause)
    yield rest


def multipart_body(blob: bytes) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/v1/files", files=files_of(blob))
    return request.read(), request.headers["content-type"]


def test_a_key_in_use_is_refused_until_its_request_ends(live: Live) -> None:
    blob = os.urandom(20_000)
    body, content_type = multipart_body(blob)
    answers: list[httpx.Response] = []

    def first() -> None:
        with live.client() as client:
            answers.append(
                client.post(
                    "/v1/files",
                    content=slow_body(body[:1000], body[1000:], 1.5),
                    headers={KEY: "k-5", "Content-Type": content_type},
                )
            )

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.5)
    with live.client() as client:
        busy = client.post("/v1/files", files=files_of(blob), headers={KEY: "k-5"})
        assert_problem(busy, 409, "idempotency-key-in-progress")
        assert busy.headers["retry-after"] == "1"
        thread.join(30)
        assert answers[0].status_code == 201
        later = client.post("/v1/files", files=files_of(blob), headers={KEY: "k-5"})
        assert later.headers["idempotent-replayed"] == "true"
        assert later.json() == answers[0].json()
        assert stored(client, blob) == 1


def test_a_key_held_by_a_killed_server_is_free_after_a_restart(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    blob = os.urandom(20_000)
    body, content_type = multipart_body(blob)

    def cut_short() -> None:
        headers = {KEY: "k-6", "Content-Type": content_type}
        with (
            httpx.Client(base_url=server.url, timeout=30) as client,
            pytest.raises(httpx.TransportError),
        ):
            slow = slow_body(body[:1000], body[1000:], 3)
            client.post("/v1/files", content=slow, headers=headers)

    thread = threading.Thread(target=cut_short)
    thread.start()
    time.sleep(1)
    server.kill()
    server.start()
    thread.join(30)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post("/v1/files", files=files_of(blob), headers={KEY: "k-6"})
        assert answer.status_code == 201, answer.text
        assert "idempotent-replayed" not in answer.headers


def test_keys_expire_and_the_sweep_removes_them(server_factory: ServerFactory) -> None:
    server = server_factory(idempotency_ttl=1)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for key in ("a", "b"):
            response = client.post("/v1/files", files=files_of(os.urandom(100)), headers={KEY: key})
            assert response.status_code == 201
        time.sleep(1.2)
        # Expired: the key takes another request.
        fresh = client.post("/v1/files", files=files_of(os.urandom(100)), headers={KEY: "a"})
        assert fresh.status_code == 201 and "idempotent-replayed" not in fresh.headers
        time.sleep(1.2)
    swept = subprocess.run(
        [sys.executable, "-m", "uploads_api.cli", "sweep", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        cwd=ROOT,
    )
    assert swept.returncode == 0, swept.stderr
    assert "2 expired idempotency keys" in swept.stdout, swept.stdout


def test_a_malformed_key_is_a_validation_error(live: Live) -> None:
    with live.client() as client:
        for key in ("", "x" * 256, "with space", 'in"side'):
            response = client.post("/v1/files", files=files_of(b"x"), headers={KEY: key})
            assert_problem(response, 422, "validation-error")
