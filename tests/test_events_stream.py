"""``GET /v1/events`` end to end: a real server streams Server-Sent Events to httpx.

The exact framing, in order; a client that drops and resumes with ``Last-Event-ID`` (or
``?last_event_id=``) misses nothing; owners never see each other's events; tokens (valid,
expired, tampered, another use, signed with a rotated-out key, of a revoked key); events
committed by another process on the same data dir; heartbeats; ``?wait=``; and a server
that stops at once with streams open. Every read has a timeout, so no test can hang.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import imagegen
from tests.cluster import AWS_ENV, ClusterConfig, Worker
from tests.conftest import ROOT, Server, ServerFactory
from tests.helpers import (
    assert_problem,
    bearer,
    cli_env,
    create_key,
    create_keys,
    wait_closed,
    wait_for,
)
from uploads_api.signing import KeyRing

pytestmark = pytest.mark.e2e

# No read may wait longer than this: a missing event fails the test instead of hanging it.
READ_TIMEOUT = 10.0
OLD_KEY = "old-signing-key-" + "o" * 32
NEW_KEY = "new-signing-key-" + "n" * 32


# Reading a stream ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One block of lines up to a blank line: an event, or a comment."""

    lines: tuple[str, ...]

    @property
    def is_comment(self) -> bool:
        return all(line.startswith(":") for line in self.lines)

    def field(self, name: str) -> str:
        (value,) = [line[len(name) + 2 :] for line in self.lines if line.startswith(name + ": ")]
        return value

    @property
    def id(self) -> str:
        return self.field("id")

    @property
    def event(self) -> str:
        return self.field("event")

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.field("data"))
        return payload

    @property
    def file_id(self) -> str:
        file_id: str = self.payload["data"]["id"]
        return file_id


class EventStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def frame(self) -> Frame | None:
        """The next block; None once the server has ended the stream."""
        lines: list[str] = []
        for line in self._lines:
            if line == "":
                if lines:
                    return Frame(tuple(lines))
                continue
            lines.append(line)
        assert not lines, f"the stream ended inside a block: {lines}"
        return None

    def events(self, count: int, *, files: set[str] | None = None) -> list[Frame]:
        """The next ``count`` events (of these files, when given), comments skipped."""
        found: list[Frame] = []
        while len(found) < count:
            frame = self.frame()
            assert frame is not None, f"the stream ended after {found}"
            if frame.is_comment or (files is not None and frame.file_id not in files):
                continue
            found.append(frame)
        return found

    def rest(self) -> list[Frame]:
        """Everything up to the end of a stream the server ends (``?wait=``)."""
        frames = []
        while (frame := self.frame()) is not None:
            frames.append(frame)
        return frames


@contextmanager
def open_stream(
    server: Server,
    key: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[EventStream]:
    sent = {**(bearer(key) if key else {}), **(headers or {})}
    timeout = httpx.Timeout(READ_TIMEOUT)
    with (
        httpx.Client(base_url=server.url, timeout=timeout) as http,
        http.stream("GET", "/v1/events", params=params, headers=sent) as response,
    ):
        assert response.status_code == 200, response.read()[:500]
        yield EventStream(response)


def upload(server: Server, key: str | None = None, name: str = "note.txt") -> str:
    """A text file: created and ready at once (there is nothing to process)."""
    response = httpx.post(
        f"{server.url}/v1/files",
        files={"file": (name, b"hello events " + name.encode(), "text/plain")},
        headers=bearer(key) if key else None,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    file_id: str = response.json()["files"][0]["id"]
    return file_id


def delete(server: Server, file_id: str, key: str | None = None) -> None:
    response = httpx.delete(
        f"{server.url}/v1/files/{file_id}", headers=bearer(key) if key else None, timeout=30
    )
    assert response.status_code == 204, response.text


def kinds(frames: list[Frame]) -> list[tuple[str, str]]:
    return [(frame.file_id, frame.event) for frame in frames]


# An open server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_server(module_server_factory: ServerFactory) -> Server:
    return module_server_factory(event_stream_heartbeat=1)


def test_events_arrive_in_order_with_the_exact_framing(open_server: Server) -> None:
    with open_stream(open_server) as stream:
        headers = stream.response.headers
        assert headers["content-type"].split(";")[0] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        file_id = upload(open_server)
        delete(open_server, file_id)
        frames = stream.events(3, files={file_id})
    assert kinds(frames) == [
        (file_id, "file.created"),
        (file_id, "file.ready"),
        (file_id, "file.deleted"),
    ]
    for frame in frames:
        assert len(frame.lines) == 3, frame.lines
        assert frame.lines[0] == f"id: {frame.id}" and frame.id.startswith("msg_")
        assert frame.lines[1] == f"event: {frame.event}"
        payload = frame.payload
        # The stored payload, as compact JSON on one line.
        assert frame.lines[2] == "data: " + json.dumps(payload, separators=(",", ":"))
        assert list(payload) == ["type", "timestamp", "data"]
        assert payload["type"] == frame.event and payload["timestamp"].endswith("Z")
    assert len({frame.id for frame in frames}) == 3
    assert frames[1].payload["data"]["status"] == "ready"


def test_a_client_that_reconnects_with_last_event_id_misses_nothing(open_server: Server) -> None:
    with open_stream(open_server) as stream:
        first = upload(open_server, name="first.txt")
        seen = stream.events(2, files={first})
    last_id = seen[-1].id
    # Disconnected: files come and go meanwhile.
    second = upload(open_server, name="second.txt")
    third = upload(open_server, name="third.txt")
    delete(open_server, first)
    missed = [
        (second, "file.created"),
        (second, "file.ready"),
        (third, "file.created"),
        (third, "file.ready"),
        (first, "file.deleted"),
    ]
    mine = {first, second, third}
    with open_stream(open_server, headers={"Last-Event-ID": last_id}) as stream:
        assert kinds(stream.events(5, files=mine)) == missed
        # Then live, on the same connection.
        fourth = upload(open_server, name="fourth.txt")
        assert kinds(stream.events(1, files={fourth})) == [(fourth, "file.created")]

    # The query parameter does the same for clients that cannot set headers; with wait=0
    # the stream ends once the stored events are sent.
    with open_stream(open_server, params={"last_event_id": last_id, "wait": 0}) as stream:
        frames = [f for f in stream.rest() if not f.is_comment and f.file_id in mine]
    assert kinds(frames)[:5] == missed
    # The header wins over the parameter (a browser's reconnection sends the newer one).
    newest = seen[0].id
    with open_stream(
        open_server, params={"last_event_id": newest, "wait": 0}, headers={"Last-Event-ID": last_id}
    ) as stream:
        frames = [f for f in stream.rest() if not f.is_comment and f.file_id in mine]
    assert kinds(frames)[:5] == missed


@pytest.mark.parametrize("unknown", ["msg_" + "0" * 24, "not-an-id"])
def test_an_unknown_last_event_id_is_said_and_the_stream_starts_from_now(
    open_server: Server, unknown: str
) -> None:
    with open_stream(open_server, headers={"Last-Event-ID": unknown}) as stream:
        first = stream.frame()
        assert first is not None and first.lines == (
            f": {unknown} is unknown or no longer kept: events from now on",
        )
        file_id = upload(open_server)
        assert kinds(stream.events(1, files={file_id})) == [(file_id, "file.created")]


def test_an_unknown_id_is_echoed_on_one_line(open_server: Server) -> None:
    """A line break in ?last_event_id= cannot make the comment an event."""
    forged = "x\nevent: file.ready\ndata: {}"
    with open_stream(open_server, params={"last_event_id": forged, "wait": 0}) as stream:
        frames = stream.rest()
    assert [f.lines for f in frames] == [
        (": xevent: file.readydata: {} is unknown or no longer kept: events from now on",)
    ]


def test_heartbeats_arrive_while_nothing_happens(open_server: Server) -> None:
    with open_stream(open_server) as stream:
        started = time.monotonic()
        beats = [stream.frame() for _ in range(2)]
    assert all(b is not None and b.lines == (": keep-alive",) for b in beats), beats
    # UPLOADS_EVENT_STREAM_HEARTBEAT=1 on this server.
    assert 1.5 < time.monotonic() - started < 5


def test_wait_ends_the_stream_after_that_many_seconds(open_server: Server) -> None:
    started = time.monotonic()
    with open_stream(open_server, params={"wait": 0.5}) as stream:
        file_id = upload(open_server)
        frames = stream.rest()
    assert 0.5 <= time.monotonic() - started < 5
    assert (file_id, "file.created") in kinds([f for f in frames if not f.is_comment])


@pytest.mark.parametrize("wait", ["-1", "86401", "soon"])
def test_a_wait_out_of_range_is_refused(open_server: Server, wait: str) -> None:
    response = httpx.get(f"{open_server.url}/v1/events", params={"wait": wait}, timeout=10)
    assert_problem(response, 422, "validation-error")


def test_the_generated_key_is_kept_in_the_data_dir_and_signs_tokens(open_server: Server) -> None:
    key_file = open_server.data_dir / "signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    issued = httpx.post(f"{open_server.url}/v1/events/tokens", timeout=10)
    assert issued.status_code == 201
    assert KeyRing.load((), open_server.data_dir).verify(issued.json()["token"]) is not None


# Owners, keys and tokens ----------------------------------------------------------------------


@dataclass(frozen=True)
class Keyed:
    server: Server
    keys: dict[str, str]


@pytest.fixture(scope="module")
def keyed(module_server_factory: ServerFactory) -> Keyed:
    # The new key signs; the old one still verifies (a rotation in progress).
    server = module_server_factory(event_stream_heartbeat=0.5, signing_key=f"{NEW_KEY},{OLD_KEY}")
    keys = create_keys(server.data_dir, "alice", "bob", "admin", admin=("admin",))
    wait_closed(server)
    return Keyed(server, keys)


def test_another_owners_events_never_appear(keyed: Keyed) -> None:
    server, keys = keyed.server, keyed.keys
    with (
        open_stream(server, keys["alice"]) as alice,
        open_stream(server, keys["bob"]) as bob,
        open_stream(server, keys["admin"]) as admin,
    ):
        alices = upload(server, keys["alice"], "alice.txt")
        bobs = upload(server, keys["bob"], "bob.txt")
        # Each owner's stream, up to its second file's event: nothing of the other's.
        last = upload(server, keys["alice"], "alice-last.txt")
        alice_seen = alice.events(4)
        assert {f.file_id for f in alice_seen} == {alices, last}, kinds(alice_seen)
        bob_last = upload(server, keys["bob"], "bob-last.txt")
        bob_seen = bob.events(4)
        assert {f.file_id for f in bob_seen} == {bobs, bob_last}, kinds(bob_seen)
        assert {f.file_id for f in admin.events(8)} == {alices, bobs, last, bob_last}
    # Resuming from another owner's event is resuming from an unknown one.
    with open_stream(
        server, keys["bob"], headers={"Last-Event-ID": alice_seen[0].id}, params={"wait": 0}
    ) as stream:
        frames = stream.rest()
    assert frames and frames[0].is_comment and "unknown" in frames[0].lines[0]
    assert all(f.is_comment or f.file_id not in {alices, last} for f in frames)


def test_a_stream_needs_a_key_or_a_token(keyed: Keyed) -> None:
    response = httpx.get(f"{keyed.server.url}/v1/events", timeout=10)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'Bearer realm="uploads-api"'
    assert_problem(
        httpx.post(f"{keyed.server.url}/v1/events/tokens", timeout=10), 401, "unauthorized"
    )


def issue(keyed: Keyed, owner: str) -> dict[str, Any]:
    response = httpx.post(
        f"{keyed.server.url}/v1/events/tokens", headers=bearer(keyed.keys[owner]), timeout=10
    )
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


def test_a_token_opens_the_callers_stream_without_a_header(keyed: Keyed) -> None:
    issued = issue(keyed, "alice")
    assert set(issued) == {"token", "expires_at"}
    left = datetime.fromisoformat(issued["expires_at"]).timestamp() - time.time()
    assert 55 < left <= 60, issued["expires_at"]
    with open_stream(keyed.server, params={"token": issued["token"]}) as stream:
        bobs = upload(keyed.server, keyed.keys["bob"], "bob.txt")
        alices = upload(keyed.server, keyed.keys["alice"], "alice.txt")
        assert {f.file_id for f in stream.events(2)} == {alices}
    assert bobs != alices
    # The new key (first in UPLOADS_SIGNING_KEY) signs.
    assert KeyRing([NEW_KEY]).verify(issued["token"]) is not None
    assert KeyRing([OLD_KEY]).verify(issued["token"]) is None


def payload_for(owner: str, *, expires_in: float = 60, use: str = "events") -> dict[str, Any]:
    return {
        "use": use,
        "owner": owner,
        "admin": False,
        "key": None,
        "exp": time.time() + expires_in,
    }


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("expired", lambda: KeyRing([NEW_KEY]).sign(payload_for("alice", expires_in=-1))),
        ("another use", lambda: KeyRing([NEW_KEY]).sign(payload_for("alice", use="link"))),
        ("unknown key", lambda: KeyRing(["some-other-key-" + "x" * 32]).sign(payload_for("alice"))),
        ("not a token", lambda: "abc.def"),
    ],
)
def test_a_bad_token_is_refused(keyed: Keyed, name: str, make: Any) -> None:
    response = httpx.get(f"{keyed.server.url}/v1/events", params={"token": make()}, timeout=10)
    problem = assert_problem(response, 401, "unauthorized")
    assert "token" in problem["detail"], name


def test_a_tampered_token_is_refused(keyed: Keyed) -> None:
    token = issue(keyed, "bob")["token"]
    body, signature = token.split(".")
    claims = KeyRing([NEW_KEY]).verify(token)
    assert claims is not None and claims["owner"] == "bob"
    claims["owner"] = "alice"
    forged = _encode(json.dumps(claims, separators=(",", ":")).encode()) + "." + signature
    response = httpx.get(f"{keyed.server.url}/v1/events", params={"token": forged}, timeout=10)
    assert_problem(response, 401, "unauthorized")
    flipped = body + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    response = httpx.get(f"{keyed.server.url}/v1/events", params={"token": flipped}, timeout=10)
    assert_problem(response, 401, "unauthorized")


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_signed_with_a_key_being_rotated_out_still_opens(keyed: Keyed) -> None:
    """UPLOADS_SIGNING_KEY=new,old: what the old key signed verifies until it is dropped."""
    alice_id = _key_id(keyed, "alice")
    old = KeyRing([OLD_KEY]).sign(
        {
            "use": "events",
            "owner": "alice",
            "admin": False,
            "key": alice_id,
            "exp": time.time() + 30,
        }
    )
    with open_stream(keyed.server, params={"token": old, "wait": 0}) as stream:
        assert stream.rest() == []


def _key_id(keyed: Keyed, owner: str) -> int:
    token = issue(keyed, owner)["token"]
    claims = KeyRing([NEW_KEY]).verify(token)
    assert claims is not None
    key_id: int = claims["key"]
    return key_id


def test_a_revoked_keys_stream_ends_and_its_tokens_stop_working(keyed: Keyed) -> None:
    key = create_key(keyed.server.data_dir, "carol")
    carol = Keyed(keyed.server, {"carol": key})
    wait_for(
        lambda: httpx.get(f"{keyed.server.url}/v1/files", headers=bearer(key)).status_code == 200
    )
    token = issue(carol, "carol")["token"]
    with open_stream(keyed.server, key) as stream:
        command = ["keys", "revoke", key[:10], "--data-dir", str(keyed.server.data_dir)]
        revoked = subprocess.run(
            [sys.executable, "-m", "uploads_api.cli", *command],
            capture_output=True,
            text=True,
            env=cli_env(),
            cwd=ROOT,
            timeout=60,
        )
        assert revoked.returncode == 0, revoked.stderr
        frames = stream.rest()  # heartbeat 0.5 s, key answers cached 2 s
    assert frames[-1].lines == (": the API key is no longer valid",)
    response = httpx.get(f"{keyed.server.url}/v1/events", params={"token": token}, timeout=10)
    assert_problem(response, 401, "unauthorized")


# Several processes --------------------------------------------------------------------------


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


def test_a_server_with_open_streams_stops_at_once(server: Server) -> None:
    with open_stream(server) as stream:
        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        frames = stream.rest()
        server.process.wait(10)
    # Not uvicorn's graceful timeout (UPLOADS_SHUTDOWN_GRACE_SECONDS + 5 = 7 s here).
    assert time.monotonic() - started < 4
    assert frames[-1].lines == (": the server is stopping: reconnect with Last-Event-ID to go on",)
    # uvicorn raises the signal again once it has shut down gracefully.
    assert server.process.returncode in (0, -signal.SIGTERM)
    logs = server.logs()
    assert "Application shutdown complete" in logs
    assert "Cancel" not in logs and "Traceback" not in logs
