"""The Python client: retry policy and error mapping against httpx's MockTransport (the
edge of the process), then every method of ``Client`` and ``AsyncClient`` against a live
server."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import imagegen
from tests.conftest import Server
from tests.helpers import record_json
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
    collect_files,
)
from uploads_api.client.batch import Event, Started, Stopping
from uploads_api.client.batching import BatchLimits
from uploads_api.client.retry import parse_retry_after
from uploads_api.client.sources import UploadSource, sha256_files

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, jitter=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


@pytest.mark.parametrize(("change", "word"), [(b"more", "grew"), (None, "shrank")])
def test_a_file_changed_while_sent_is_refused(
    tmp_path: Path, change: bytes | None, word: str
) -> None:
    path = tmp_path / "live.log"
    path.write_bytes(b"a" * 10)
    reader = UploadSource(path).open()
    try:
        if change is None:
            path.write_bytes(b"a" * 5)
        else:
            with path.open("ab") as stream:
                stream.write(change)
        with pytest.raises(IntegrityError, match=word):
            reader.read()
    finally:
        reader.close()


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


def test_collect_files_applies_globs(tmp_path: Path) -> None:
    for name in ["a.jpg", "b.txt", "sub/c.jpg", "sub/deep/d.jpg", ".git/e.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    found = collect_files(tmp_path, recursive=True, include=["*.jpg"], exclude=[".git"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.jpg",
        "sub/c.jpg",
        "sub/deep/d.jpg",
    ]
    assert collect_files(tmp_path) == [tmp_path / "a.jpg", tmp_path / "b.txt"]
    with pytest.raises(FileNotFoundError):
        collect_files(tmp_path / "missing")


def test_collect_files_takes_a_file_once_however_it_is_reached(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ["a.jpg", "sub/b.jpg"]:
        (photos / name).write_bytes(name.encode())
    (photos / "sub" / "link.jpg").symlink_to(photos / "a.jpg")
    os.link(photos / "a.jpg", photos / "hard.jpg")  # another name, not a link: kept
    (tmp_path / "album").symlink_to(photos)
    found = collect_files(
        [photos / "sub" / "b.jpg", photos, tmp_path / "album", photos / "sub" / ".." / "a.jpg"],
        recursive=True,
    )
    assert found == [photos / "sub" / "b.jpg", photos / "a.jpg", photos / "hard.jpg"]


def test_sha256_files_hashes_in_order_and_stops_when_told(tmp_path: Path) -> None:
    paths = [tmp_path / "a", tmp_path / "missing", tmp_path / "b"]
    paths[0].write_bytes(b"a")
    paths[2].write_bytes(b"b" * (3 * 1024 * 1024))
    digests = sha256_files(paths)
    assert digests[0] == sha(b"a") and digests[2] == sha(b"b" * (3 * 1024 * 1024))
    assert isinstance(digests[1], FileNotFoundError)
    stop = threading.Event()
    stop.set()
    with pytest.raises(InterruptedError):
        sha256_files(paths, stop)


# Against a live server


# The cap lets one test provoke real 429s; the others never have more uploads in flight.
UPLOAD_CAP = 3


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("client-server")
    env = {"UPLOADS_MAX_CONCURRENT_UPLOADS": str(UPLOAD_CAP)}
    server = Server(base / "data", env, base / "server.log")
    server.start()
    yield server
    server.stop()


def inputs(folder: Path) -> dict[str, Path]:
    """A small photo, a truncated JPEG (its thumbnails fail) and a text file, unique bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    notes = folder / "notes.txt"
    notes.write_bytes(os.urandom(16).hex().encode() * 100)
    return {
        "photo": imagegen.jpeg_photo(folder, size=(120, 80)),
        "broken": imagegen.truncated_jpeg(folder),
        "notes": notes,
    }


@pytest.mark.e2e
def test_sync_client_every_method(live: Server, tmp_path: Path) -> None:
    files = inputs(tmp_path)
    with Client(live.url, timeout=30) as client:
        photo = client.upload(files["photo"])
        assert (photo.filename, photo.sha256) == ("photo.jpg", sha(files["photo"].read_bytes()))
        assert photo.sha256 is not None
        from_bytes = client.upload(os.urandom(100), filename="random.bin")
        with files["notes"].open("rb") as stream:
            notes = client.upload(stream)
        assert notes.filename == "notes.txt"
        broken = client.upload(files["broken"], filename="broken.jpg")

        ready = client.wait(photo.id, timeout=30)
        assert ready.status == "ready"
        assert [t.size for t in ready.thumbnails] == [256, 1024]
        assert client.full_url(ready.thumbnails[0].url).startswith(live.url + "/v1/files/")
        assert client.get(notes.id, wait=30).status == "ready"
        failed = client.wait(broken.id, timeout=30)
        assert failed.status == "failed"
        assert "thumbnails" in (failed.failure() or "")

        mine = {photo.id, from_bytes.id, notes.id, broken.id}
        listed = [r.id for r in client.list(page_size=1) if r.id in mine]
        assert sorted(listed) == sorted(mine), "every page is followed"
        assert len(list(client.list(limit=3, page_size=2))) == 3
        assert [r.id for r in client.list(sha256=photo.sha256)] == [photo.id]
        assert broken.id in {r.id for r in client.list("failed")}

        unknown = sha(b"never uploaded")
        check = client.check([photo.sha256, unknown, photo.sha256.upper()])
        assert (check.present, check.missing) == ((photo.sha256,), (unknown,))

        target = tmp_path / "out" / "copy.jpg"
        target.parent.mkdir()
        assert client.download(photo.id, target) == files["photo"].stat().st_size
        assert target.read_bytes() == files["photo"].read_bytes()
        assert not list(target.parent.glob(".*.part")), "no temp file left behind"
        buffer = io.BytesIO()
        client.download(notes.id, buffer)
        assert buffer.getvalue() == files["notes"].read_bytes()

        failed_tasks = [t for t in client.tasks("failed") if t.file_id == broken.id]
        assert [t.name for t in failed_tasks] == ["thumbnails"]
        assert client.retry(broken.id).status == "processing"
        assert client.wait(broken.id, timeout=30).status == "failed"

        client.delete(from_bytes.id)
        with pytest.raises(NotFound) as caught:
            client.get(from_bytes.id)
        assert caught.value.code == "not-found"
        with pytest.raises(NotFound):
            client.delete(from_bytes.id)
        with pytest.raises(ValidationError) as invalid:
            next(client.list("bogus"))
        assert invalid.value.code == "validation-error"


@pytest.mark.e2e
def test_async_client_every_method(live: Server, tmp_path: Path) -> None:
    files = inputs(tmp_path)

    async def main() -> None:
        async with AsyncClient(live.url, timeout=30) as client:
            seen: list[int] = []
            photo, notes, broken = await asyncio.gather(
                client.upload(files["photo"], progress=seen.append),
                client.upload(files["notes"].read_bytes(), filename="notes.txt"),
                client.upload(files["broken"]),
            )
            assert seen[0] == 0 and seen[-1] == files["photo"].stat().st_size
            assert (await client.wait(photo.id, timeout=30)).status == "ready"
            assert (await client.get(notes.id, wait=30)).status == "ready"
            failed = await client.wait(broken.id, timeout=30)
            assert failed.status == "failed"

            mine = {photo.id, notes.id, broken.id}
            listed = {r.id async for r in client.list(page_size=2)}
            assert mine <= listed
            assert [r.id async for r in client.list(sha256=notes.sha256)] == [notes.id]
            assert photo.sha256 is not None
            check = await client.check([photo.sha256, sha(b"nothing")])
            assert check.present == (photo.sha256,)

            target = tmp_path / "copy.jpg"
            await client.download(photo.id, target)
            assert target.read_bytes() == files["photo"].read_bytes()

            tasks = [t async for t in client.tasks("failed", limit=50)]
            assert broken.id in {t.file_id for t in tasks}
            assert (await client.retry(broken.id)).status == "processing"

            await client.delete(notes.id)
            with pytest.raises(NotFound):
                await client.get(notes.id)
            with pytest.raises(ValueError):
                await client.get(photo.id, wait=61)

    asyncio.run(main())


@pytest.mark.e2e
def test_upload_many_sends_each_missing_file_once(live: Server, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    paths = []
    for i in range(6):
        paths.append(folder / f"{i}.bin")
        paths[-1].write_bytes(os.urandom(2048))
    (folder / "copy.bin").write_bytes(paths[4].read_bytes())
    paths.append(folder / "copy.bin")

    with Client(live.url) as client:
        first = client.upload_many(paths[:3], concurrency=3)
        assert [r.outcome for r in first] == ["uploaded"] * 3
        second = client.upload_many(paths, concurrency=3, skip_existing=True)
    assert [r.outcome for r in second] == ["skipped"] * 3 + ["uploaded"] * 3 + ["skipped"]
    assert second[-1].reason == f"same bytes as {paths[4]}"

    async def again() -> list[str]:
        async with AsyncClient(live.url) as client:
            results = await client.upload_many(paths, concurrency=3, skip_existing=True)
            return [r.outcome for r in results]

    assert asyncio.run(again()) == ["skipped"] * 7
    with Client(live.url) as client:
        for path in paths[:6]:
            assert len(list(client.list(sha256=sha(path.read_bytes())))) == 1


class SlowStream(io.BytesIO):
    """A body that takes its time, holding one of the server's upload slots meanwhile."""

    def read(self, size: int | None = -1) -> bytes:
        time.sleep(0.4)
        return super().read(size)


@pytest.mark.e2e
def test_live_throttling_is_waited_out(live: Server) -> None:
    notices: list[Retrying] = []
    blobs = [os.urandom(1000) for _ in range(UPLOAD_CAP + 1)]

    async def main() -> list[FileRecord]:
        async with AsyncClient(live.url) as client:
            slow = [
                asyncio.create_task(client.upload(SlowStream(blob), filename="slow.bin"))
                for blob in blobs[:UPLOAD_CAP]
            ]
            await asyncio.sleep(0.3)
            quick = await client.upload(blobs[-1], filename="quick.bin", on_retry=notices.append)
            return [*await asyncio.gather(*slow), quick]

    records = asyncio.run(main())
    assert [r.sha256 for r in records] == [sha(b) for b in blobs]
    assert any(n.reason == "429 too-many-uploads" and n.delay >= 1 for n in notices), notices
