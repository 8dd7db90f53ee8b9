"""``GET /v1/events`` end to end: a real server streams Server-Sent Events to httpx.

The exact framing, in order; a client that drops and resumes with ``Last-Event-ID`` (or
``?last_event_id=``) misses nothing; heartbeats; ``?wait=``; the generated signing key;
and a server that stops at once with streams open. Every read has a timeout, so no test
can hang.
"""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from tests.conftest import Server, ServerFactory
from tests.event_stream_helpers import delete, kinds, open_stream, upload
from tests.helpers import assert_problem
from uploads_api.signing import KeyRing

pytestmark = pytest.mark.e2e

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


# A server that stops ------------------------------------------------------------------------


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
