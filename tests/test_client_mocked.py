"""The Python client against httpx's MockTransport (the edge of the process): the retry
policy, the error each answer maps to, what a request carries (the key, the quoted name),
and what a client does when the server cannot be reached or an answer is lost."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import record_json
from tests.helpers import sha256 as sha
from uploads_api.client import (
    ApiError,
    AsyncClient,
    BatchUploader,
    Client,
    FileRecord,
    IntegrityError,
    NotFound,
    PayloadTooLarge,
    ProcessingTimeout,
    Retrying,
    RetryPolicy,
    ServerError,
    TransportError,
    Unauthorized,
    UploadResult,
    ValidationError,
)
from uploads_api.client.batch import Event, Started, Stopping
from uploads_api.client.batching import BatchLimits
from uploads_api.client.retry import parse_retry_after

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, jitter=False)


def problem(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"type": "x", "title": code.title(), "status": status, "detail": "why", "code": code}
    return httpx.Response(
        status, json=body, headers={"content-type": "application/problem+json", **headers}
    )


class Recorder:
    """A MockTransport handler answering from a script, recording each request."""

    def __init__(self, *answers: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request)


def mock_client(recorder: Recorder, **options: Any) -> Client:
    """A client over ``recorder``; uploads go through the API unless ``direct=True``
    (tests/test_direct_uploads_client.py covers direct uploads)."""
    options.setdefault("retry", FAST)
    options.setdefault("direct", False)
    return Client("http://uploads.test", transport=httpx.MockTransport(recorder), **options)


def created(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json=record_json(request.read(), request.url.path.split("/")[-1]))


# Retry policy and error mapping


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_transient_statuses_are_retried_then_succeed(status: int) -> None:
    recorder = Recorder(lambda r: problem(status, "oops"), created)
    notices: list[Retrying] = []
    with mock_client(recorder) as client:
        record = client.upload(b"hello", filename="a.bin", on_retry=notices.append)
    assert record.size == 5
    assert recorder.bodies == [b"hello", b"hello"], "every try sends the whole body"
    assert [(n.tries, n.reason) for n in notices] == [(1, f"{status} oops")]


def test_throttling_honours_retry_after_and_spares_the_attempt_budget() -> None:
    policy = RetryPolicy(attempts=1, base_delay=0.01, jitter=False)
    recorder = Recorder(
        lambda r: problem(429, "too-many-uploads", **{"Retry-After": "1"}),
        lambda r: httpx.Response(200, json={"present": [], "missing": ["a" * 64]}),
    )
    started = time.monotonic()
    with mock_client(recorder, retry=policy) as client:
        result = client.check(["a" * 64])
    assert time.monotonic() - started >= 1.0
    assert result.missing == ("a" * 64,)
    assert len(recorder.requests) == 2


def test_async_client_retries_the_same_way() -> None:
    recorder = Recorder(lambda r: problem(503, "service-unavailable"), created)

    async def main() -> FileRecord:
        transport = httpx.MockTransport(recorder)
        async with AsyncClient(
            "http://uploads.test", transport=transport, retry=FAST, direct=False
        ) as c:
            return await c.upload(io.BytesIO(b"x" * 3_000_000), filename="big.bin")

    record = asyncio.run(main())
    assert record.size == 3_000_000
    assert [len(b) for b in recorder.bodies] == [3_000_000, 3_000_000]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, ApiError), (404, NotFound), (413, PayloadTooLarge), (422, ValidationError)],
)
def test_permanent_errors_raise_at_once_with_the_problem(status: int, kind: type) -> None:
    recorder = Recorder(lambda r: problem(status, "some-code"))
    with mock_client(recorder) as client, pytest.raises(kind) as caught:
        client.upload(b"data", filename="a.bin")
    assert len(recorder.requests) == 1
    error = caught.value
    assert isinstance(error, ApiError)
    assert (error.status, error.code, error.detail) == (status, "some-code", "why")
    assert error.problem["status"] == status


def test_retries_give_up_after_the_budget() -> None:
    recorder = Recorder(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    with mock_client(recorder) as client, pytest.raises(ServerError) as caught:
        client.get("ab" * 16)
    assert len(recorder.requests) == FAST.attempts
    assert (caught.value.status, caught.value.code, caught.value.problem) == (502, "http-502", {})


def test_connection_errors_are_retried_then_raised_as_transport_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    recorder = Recorder(refuse)
    with mock_client(recorder) as client, pytest.raises(TransportError) as caught:
        client.get("ab" * 16)
    assert len(recorder.requests) == FAST.attempts
    assert caught.value.unreachable
    assert "connection refused" in str(caught.value)


def test_a_lost_answer_is_looked_up_by_hash_rather_than_uploaded_twice() -> None:
    data = b"precious bytes"

    def lost(request: httpx.Request) -> httpx.Response:
        request.read()
        raise httpx.ReadError("connection reset after the body was sent", request=request)

    def listing(request: httpx.Request) -> httpx.Response:
        assert request.url.params["sha256"] == sha(data)
        return httpx.Response(200, json={"files": [record_json(data)], "next_cursor": None})

    recorder = Recorder(lost, listing)
    with mock_client(recorder) as client:
        record = client.upload(data, filename="a.bin", sha256=sha(data))
    assert record.sha256 == sha(data)
    assert [r.method for r in recorder.requests] == ["PUT", "GET"]
    digest = recorder.requests[0].headers["content-digest"]
    assert digest.startswith("sha-256=:") and digest.endswith(":")


def test_the_api_key_is_sent_as_a_bearer_token_and_401_is_unauthorized() -> None:
    recorder = Recorder(lambda r: problem(401, "unauthorized"))
    with (
        mock_client(recorder, api_key="upk_secret") as client,
        pytest.raises(Unauthorized) as caught,
    ):
        client.get("ab" * 16)
    assert recorder.requests[0].headers["authorization"] == "Bearer upk_secret"
    assert caught.value.code == "unauthorized"


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPLOADS_URL", "http://from-env.test:9000/")
    monkeypatch.setenv("UPLOADS_API_KEY", "upk_env")
    recorder = Recorder(lambda r: httpx.Response(200, json={"files": [], "next_cursor": None}))
    with Client(transport=httpx.MockTransport(recorder)) as client:
        assert list(client.list()) == []
    assert str(recorder.requests[0].url).startswith("http://from-env.test:9000/v1/files")
    assert recorder.requests[0].headers["authorization"] == "Bearer upk_env"


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("photo 1.jpg", "/v1/files/photo%201.jpg"),
        ("a#b?c%.txt", "/v1/files/a%23b%3Fc%25.txt"),
        ("dir/sub/été.png", "/v1/files/%C3%A9t%C3%A9.png"),
    ],
)
def test_upload_names_are_quoted_into_one_path_segment(name: str, path: str) -> None:
    recorder = Recorder(created)
    with mock_client(recorder) as client:
        client.upload(b"x", filename=name)
    assert recorder.requests[0].url.raw_path.decode() == path


def test_a_record_for_other_bytes_is_an_integrity_error() -> None:
    recorder = Recorder(lambda r: httpx.Response(201, json=record_json(b"something else")))
    with mock_client(recorder) as client, pytest.raises(IntegrityError):
        client.upload(b"what was sent", filename="a.bin")


def test_a_batch_starts_no_more_uploads_once_the_server_is_unreachable(tmp_path: Path) -> None:
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.bin")
        paths[-1].write_bytes(b"x" * i)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    events: list[Event] = []

    async def main() -> list[UploadResult]:
        transport = httpx.MockTransport(refuse)
        async with AsyncClient("http://uploads.test", transport=transport, retry=FAST) as client:
            uploader = BatchUploader(client, concurrency=1, on_event=events.append, batch=batch)
            return await uploader.run(paths)

    # One file per request: the first is tried, the others never start.
    batch: BatchLimits | None = None
    results = asyncio.run(main())
    assert [r.outcome for r in results] == ["failed"] * 4
    assert results[0].tries == FAST.attempts
    assert all(str(r.error).startswith("not sent") for r in results[1:])
    assert [type(e) for e in events].count(Stopping) == 1
    assert [type(e) for e in events].count(Started) == 1

    # Two files per request: the first request's files are tried, the second's never go.
    batch, events = BatchLimits(files=2), []
    results = asyncio.run(main())
    assert [r.outcome for r in results] == ["failed"] * 4
    assert [r.tries for r in results[:2]] == [FAST.attempts] * 2
    assert all(str(r.error).startswith("not sent") for r in results[2:])
    assert [type(e) for e in events].count(Stopping) == 1


def test_wait_gives_up_with_the_record_as_last_seen() -> None:
    still = record_json(b"x")
    recorder = Recorder(lambda r: httpx.Response(200, json=still))
    with mock_client(recorder) as client, pytest.raises(ProcessingTimeout) as caught:
        client.wait(still["id"], timeout=0.2)
    assert caught.value.record.status == "processing"
    assert float(recorder.requests[0].url.params["wait"]) <= 0.2


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7
    assert parse_retry_after(" 0 ") == 0
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 < (parse_retry_after(format_datetime(later, usegmt=True)) or 0) <= 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    backoff = RetryPolicy(base_delay=1, max_delay=5, jitter=False)
    assert [backoff.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
