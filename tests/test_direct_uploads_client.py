"""Direct uploads from the Python client and the command line: the parts' arithmetic and
when a file goes direct, against a fake API and bucket behind httpx's MockTransport; then
end to end, a real server on S3 (moto) and the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import AWS_ENV
from tests.conftest import ROOT, Server, ServerFactory
from tests.helpers import cli_env, record_json, sha256
from tests.service_fixtures import s3_client
from uploads_api.client import (
    AsyncClient,
    Client,
    FileRecord,
    Forbidden,
    Retrying,
    RetryPolicy,
    UploadsClientError,
)
from uploads_api.client.direct import DirectOffer, Part, parse_plan, part_ranges

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, jitter=False)
API = "http://uploads.test"
BUCKET = "bucket.test"
OFFER = {"min_size": 100, "part_size": 40, "max_parts": 10_000, "expires_in": 3600}
UPLOAD_ID = "up-1"


# The parts' arithmetic


@pytest.mark.parametrize(
    ("size", "part_size", "ranges"),
    [
        (1, 40, [(0, 1)]),
        (40, 40, [(0, 40)]),
        (41, 40, [(0, 40), (40, 41)]),
        (100, 40, [(0, 40), (40, 80), (80, 100)]),
        (120, 40, [(0, 40), (40, 80), (80, 120)]),
    ],
)
def test_part_k_holds_its_slice_of_the_file(
    size: int, part_size: int, ranges: list[tuple[int, int]]
) -> None:
    assert part_ranges(size, part_size) == ranges


def test_parts_cover_the_file_once_in_order_and_are_read_in_chunks() -> None:
    size, part_size = 40 * 1024 * 1024 + 3, 8 * 1024 * 1024
    ranges = part_ranges(size, part_size)
    assert len(ranges) == 6
    assert [start for start, _ in ranges] == [end for _, end in [(0, 0), *ranges[:-1]]]
    assert ranges[-1] == (5 * part_size, size)
    spans = list(Part(6, "u", *ranges[-1]).chunks())
    assert spans == [(5 * part_size, 3)]
    spans = list(Part(1, "u", *ranges[0]).chunks())
    assert len(spans) == 8 and all(length == 1024 * 1024 for _, length in spans)
    with pytest.raises(ValueError):
        part_ranges(0, part_size)


def test_files_from_min_size_up_go_direct() -> None:
    offer = DirectOffer(min_size=100, part_size=40, max_parts=10, expires_in=60)
    assert [offer.takes(size) for size in (1, 99, 100, 10**12)] == [False, False, True, True]
    # A server that says 0 still never gets an empty file as a direct upload.
    assert not DirectOffer(0, 40, 10, 60).takes(0)


@pytest.mark.parametrize("numbers", [[1, 2], [1, 2, 3, 4], [0, 1, 2], [1, 2, 2]])
def test_a_plan_whose_parts_do_not_cover_the_file_is_refused(numbers: list[int]) -> None:
    parts = [{"number": n, "url": f"https://{BUCKET}/{n}"} for n in numbers]
    body = {"id": UPLOAD_ID, "part_size": 40, "parts": parts, "expires_at": "2026-01-01T00:00:00Z"}
    with pytest.raises(UploadsClientError, match="plan"):
        parse_plan(httpx.Response(201, json=body), 100)


# Against a fake API and bucket

Answer = int | type[httpx.TransportError]


class FakeService:
    """An API that offers direct uploads and the bucket its part URLs point to, behind one
    MockTransport handler. ``part_answers[k]`` are answered to part k's PUTs before it is
    stored (a status, or a transport error raised)."""

    def __init__(self, offer: dict[str, int] | int | None = None) -> None:
        self.offer: dict[str, int] | int | None = OFFER if offer is None else offer
        self.requests: list[httpx.Request] = []
        self.parts: dict[int, bytes] = {}
        self.part_answers: dict[int, list[Answer]] = {}
        self.complete_answers: list[Answer] = []
        self.created: list[dict[str, Any]] = []
        self.stored: list[bytes] = []  # whole files, however they came
        self.files: dict[str, dict[str, Any]] = {}  # completed direct uploads by id
        self._lock = threading.Lock()

    def paths(self, method: str | None = None) -> list[str]:
        return [r.url.path for r in self.requests if method in (None, r.method)]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        body = request.read()
        if request.url.host == BUCKET:
            return self._part(request, body)
        route = (request.method, request.url.path)
        if route == ("GET", "/v1/capabilities"):
            if isinstance(self.offer, int):
                return httpx.Response(self.offer, json={"code": "not-found"})
            return httpx.Response(200, json={"direct_uploads": self.offer or None})
        if route == ("POST", "/v1/direct-uploads"):
            return self._create(json.loads(body))
        if route == ("POST", f"/v1/direct-uploads/{UPLOAD_ID}/complete"):
            return self._complete(json.loads(body)["parts"])
        if route == ("DELETE", f"/v1/direct-uploads/{UPLOAD_ID}"):
            return httpx.Response(204)
        if route[0] == "PUT" and request.url.path.startswith("/v1/files/"):
            self.stored.append(body)
            return httpx.Response(201, json=record_json(body, request.url.path.split("/")[-1]))
        if route[0] == "GET" and route[1].startswith("/v1/files/"):
            record = self.files.get(route[1].split("/")[-1])
            return httpx.Response(200, json=record) if record else httpx.Response(404, json={})
        return httpx.Response(404, json={"code": "not-found"})

    def _create(self, spec: dict[str, Any]) -> httpx.Response:
        self.created.append(spec)
        count = len(part_ranges(spec["size"], OFFER["part_size"]))
        parts = [
            {"number": n, "url": f"https://{BUCKET}/key?partNumber={n}&X-Amz-Signature=s"}
            for n in range(1, count + 1)
        ]
        plan = {"id": UPLOAD_ID, "part_size": OFFER["part_size"], "parts": parts}
        return httpx.Response(201, json={**plan, "expires_at": "2026-01-01T00:00:00Z"})

    def _part(self, request: httpx.Request, body: bytes) -> httpx.Response:
        number = int(request.url.params["partNumber"])
        answers = self.part_answers.get(number, [])
        if answers:
            answer = answers.pop(0)
            if not isinstance(answer, int):
                raise answer("storage went away", request=request)
            return httpx.Response(answer, text="<Error/>")
        assert "authorization" not in request.headers, "the API key must not reach storage"
        assert request.headers["content-length"] == str(len(body))
        self.parts[number] = body
        return httpx.Response(200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def _complete(self, listed: list[dict[str, Any]]) -> httpx.Response:
        if UPLOAD_ID in self.files:
            return httpx.Response(404, json={"code": "not-found", "status": 404})
        if self.complete_answers and isinstance(self.complete_answers[0], int):
            # Another request is completing it (an earlier try whose answer was lost).
            status = self.complete_answers.pop(0)
            assert isinstance(status, int)
            return httpx.Response(status, json={"code": "direct-upload-busy", "status": status})
        assert [p["number"] for p in listed] == sorted(self.parts)
        for part in listed:
            assert part["etag"] == f'"{hashlib.md5(self.parts[part["number"]]).hexdigest()}"'
        data = b"".join(self.parts[n] for n in sorted(self.parts))
        self.stored.append(data)
        # Hashed later, by the server's verify task; the file has the upload's id.
        record = record_json(data, self.created[-1]["filename"], UPLOAD_ID)
        self.files[UPLOAD_ID] = {**record, "sha256": None}
        if self.complete_answers:
            answer = self.complete_answers.pop(0)
            assert not isinstance(answer, int)
            raise answer("the answer was lost", request=self.requests[-1])
        return httpx.Response(201, json=self.files[UPLOAD_ID])


def upload_with(
    kind: str, service: FakeService, source: Any, options: dict[str, Any] | None = None, **kw: Any
) -> FileRecord:
    """``upload(source, **kw)`` on a sync or async client over ``service``."""
    transport = httpx.MockTransport(service)
    settings = {"retry": FAST, "api_key": "upk_secret", **(options or {})}
    if kind == "sync":
        with Client(API, transport=transport, **settings) as client:
            return client.upload(source, **kw)

    async def main() -> FileRecord:
        async with AsyncClient(API, transport=transport, **settings) as client:
            return await client.upload(source, **kw)

    return asyncio.run(main())


KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


@KINDS
def test_a_large_file_goes_straight_to_the_bucket_in_parts(kind: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 2  # 512 bytes: 13 parts of 40
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    service = FakeService()
    heard: list[int] = []
    record = upload_with(kind, service, path, progress=heard.append)
    assert record.size == len(data) and record.sha256 is None  # hashed later by the server
    assert service.stored == [data]
    assert service.created == [{"filename": "big.bin", "size": 512, "sha256": sha256(data)}]
    assert b"".join(service.parts[n] for n in range(1, 14)) == data
    assert all(len(service.parts[n]) == 40 for n in range(1, 13)) and len(service.parts[13]) == 32
    assert not [p for p in service.paths("PUT") if p.startswith("/v1/files")]
    api_calls = [r for r in service.requests if r.url.host != BUCKET]
    assert all(r.headers["authorization"] == "Bearer upk_secret" for r in api_calls)
    assert heard[0] == 0 and heard[-1] == len(data) and heard == sorted(heard)


@KINDS
def test_what_goes_through_the_api(kind: str, tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 99)
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * 200)
    service = FakeService()
    upload_with(kind, service, small)
    upload_with(kind, service, io.BufferedReader(Unseekable(b"u" * 200)), filename="pipe.bin")
    assert service.paths("PUT") == ["/v1/files/small.bin", "/v1/files/pipe.bin"]
    assert service.paths().count("/v1/capabilities") == 1, "a stream needs no answer"
    upload_with(kind, service, big, {"direct": False})
    assert service.paths("PUT")[-1] == "/v1/files/big.bin"
    assert service.paths().count("/v1/capabilities") == 1, "direct=False does not ask"


class Unseekable(io.RawIOBase):
    """A pipe: read in order, once."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@KINDS
@pytest.mark.parametrize("offer", [404, 405, {}])
def test_a_server_without_direct_uploads_is_asked_once(kind: str, offer: Any) -> None:
    service = FakeService(offer)

    def both(client: Client) -> None:
        client.upload(b"a" * 200, filename="a.bin")
        client.upload(b"b" * 200, filename="b.bin")

    if kind == "sync":
        with Client(API, transport=httpx.MockTransport(service), retry=FAST) as client:
            both(client)
    else:

        async def main() -> None:
            transport = httpx.MockTransport(service)
            async with AsyncClient(API, transport=transport, retry=FAST) as client:
                await client.upload(b"a" * 200, filename="a.bin")
                await client.upload(b"b" * 200, filename="b.bin")

        asyncio.run(main())
    assert service.paths() == ["/v1/capabilities", "/v1/files/a.bin", "/v1/files/b.bin"]


@KINDS
def test_a_failing_part_is_retried_alone(kind: str) -> None:
    data = b"r" * 130
    service = FakeService()
    service.part_answers = {2: [503, httpx.ReadError], 4: [500]}
    notices: list[Retrying] = []
    record = upload_with(kind, service, io.BytesIO(data), filename="r.bin", on_retry=notices.append)
    assert record.size == 130 and service.stored == [data]
    part_puts = [r.url.params["partNumber"] for r in service.requests if r.url.host == BUCKET]
    assert sorted(part_puts) == ["1", "2", "2", "2", "3", "4", "4"]
    assert sorted(n.reason.split()[0] for n in notices) == ["500", "503", "storage"]


@KINDS
def test_a_part_storage_refuses_aborts_the_upload(kind: str) -> None:
    service = FakeService()
    service.part_answers = {3: [403]}
    with pytest.raises(Forbidden):
        upload_with(kind, service, b"f" * 200, filename="f.bin")
    assert service.paths("DELETE") == [f"/v1/direct-uploads/{UPLOAD_ID}"]
    assert not [p for p in service.paths("POST") if p.endswith("/complete")]


@KINDS
def test_a_server_that_stopped_offering_them_gets_the_file_through_the_api(kind: str) -> None:
    service = FakeService()
    refused: list[str] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/direct-uploads":
            refused.append(request.url.path)
            body = {"status": 404, "code": "direct-uploads-unavailable", "detail": "off"}
            return httpx.Response(404, json=body)
        return service(request)

    transport = httpx.MockTransport(unavailable)
    if kind == "sync":
        with Client(API, transport=transport, retry=FAST) as client:
            client.upload(b"x" * 200, filename="x.bin")
            client.upload(b"y" * 200, filename="y.bin")
    else:

        async def main() -> None:
            async with AsyncClient(API, transport=transport, retry=FAST) as client:
                await client.upload(b"x" * 200, filename="x.bin")
                await client.upload(b"y" * 200, filename="y.bin")

        asyncio.run(main())
    assert service.paths("PUT") == ["/v1/files/x.bin", "/v1/files/y.bin"]
    assert len(refused) == 1, "the next file is not offered again"


@KINDS
@pytest.mark.parametrize("answers", [[httpx.ReadError], [409], [409, 409]])
def test_a_completion_whose_answer_was_lost_is_found_by_its_id(
    kind: str, answers: list[Answer]
) -> None:
    """A lost answer, or 409 direct-upload-busy (an earlier try still at work): the client
    looks for the file under the upload's id before it completes again."""
    data = b"c" * 150
    service = FakeService()
    service.complete_answers = list(answers)
    record = upload_with(kind, service, data, filename="c.bin")
    assert (record.id, record.size) == (UPLOAD_ID, 150)
    assert service.stored == [data]
    assert service.paths("DELETE") == []
    assert f"/v1/files/{UPLOAD_ID}" in service.paths("GET")


def test_a_cancelled_upload_is_aborted() -> None:
    service = FakeService()
    started = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == BUCKET and request.url.params["partNumber"] == "2":
            started.set()
            await asyncio.sleep(60)
        return service(request)

    async def main() -> None:
        transport = httpx.MockTransport(handler)
        async with AsyncClient(API, transport=transport, retry=FAST) as client:
            task = asyncio.create_task(client.upload(b"z" * 200, filename="z.bin"))
            await asyncio.wait_for(started.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert service.paths("DELETE") == [f"/v1/direct-uploads/{UPLOAD_ID}"]
    assert service.stored == []


def test_a_file_that_changes_size_while_sent_is_aborted(tmp_path: Path) -> None:
    path = tmp_path / "growing.log"
    path.write_bytes(b"g" * 200)
    service = FakeService()

    def grow(request: httpx.Request) -> httpx.Response:
        if request.url.host == BUCKET and request.url.params["partNumber"] == "5":
            with path.open("ab") as stream:
                stream.write(b"more")
        return service(request)

    transport = httpx.MockTransport(grow)
    with (
        Client(API, transport=transport, retry=FAST) as client,
        pytest.raises(UploadsClientError, match="grew"),
    ):
        client.upload(path)
    assert service.paths("DELETE") == [f"/v1/direct-uploads/{UPLOAD_ID}"]


@KINDS
def test_a_known_hash_is_sent_with_the_plan_as_is(kind: str) -> None:
    data = b"k" * 120
    service = FakeService()
    upload_with(kind, service, data, filename="k.bin", sha256=sha256(data).upper())
    assert service.created == [{"filename": "k.bin", "size": 120, "sha256": sha256(data)}]


# End to end: a server on S3 (moto's), the CLI as a subprocess and the Python client

MiB = 1024 * 1024
COMMAND = [sys.executable, "-m", "uploads_api.cli"]


@pytest.fixture(scope="module")
def s3_server(module_server_factory: ServerFactory, s3_endpoint: str) -> Server:
    """Direct uploads on (the default with S3), for files of 8 MiB and more, in 8 MiB parts."""
    bucket = f"direct-client-{secrets.token_hex(6)}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    return module_server_factory(
        extra_env=AWS_ENV,
        storage_url=f"s3://{bucket}/uploads",
        s3_endpoint_url=s3_endpoint,
        direct_upload_min_size=8 * MiB,
        direct_upload_part_size=8 * MiB,
    )


def counter(server: Server, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", httpx.get(f"{server.url}/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def received(server: Server) -> tuple[float, float]:
    """Bytes the API received in bodies; bytes of direct uploads it completed."""
    return counter(server, "uploads_bytes_total"), counter(server, "uploads_direct_bytes_total")


def random_file(folder: Path, name: str, size: int) -> tuple[Path, str]:
    path = folder / name
    data = os.urandom(size)
    path.write_bytes(data)
    return path, sha256(data)


@pytest.mark.e2e
def test_the_cli_sends_a_large_file_straight_to_s3_unless_told_not_to(
    s3_server: Server, tmp_path: Path
) -> None:
    path, digest = random_file(tmp_path, "large.bin", 40 * MiB)
    api_bytes, direct_bytes = received(s3_server)
    line, summary = upload_command(s3_server, path, "--wait")
    assert summary["uploaded"] == 1 and summary["ok"], summary
    assert (line["outcome"], line["status"], line["sha256"]) == ("uploaded", "ready", digest)
    assert line["record"]["checksum_verified"], "the server checked the hash the CLI sent"
    assert received(s3_server) == (api_bytes, direct_bytes + 40 * MiB), "no byte via the API"
    with Client(s3_server.url) as client:
        copy = tmp_path / "copy.bin"
        assert client.download(line["id"], copy) == 40 * MiB  # written only if the hash matches
    assert copy.read_bytes() == path.read_bytes()

    other, _ = random_file(tmp_path, "other.bin", 9 * MiB)
    line, _ = upload_command(s3_server, other, "--no-direct")
    assert line["outcome"] == "uploaded"
    assert received(s3_server) == (api_bytes + 9 * MiB, direct_bytes + 40 * MiB)


def upload_command(server: Server, path: Path, *flags: str) -> tuple[dict[str, Any], ...]:
    """``uploads-api upload PATH --json`` in a process; its file line and its summary."""
    run = subprocess.run(
        [*COMMAND, "upload", str(path), "--json", *flags, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=240,
        env=cli_env(),
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return tuple(json.loads(text) for text in run.stdout.splitlines())


@pytest.mark.e2e
def test_direct_false_and_small_files_go_through_the_api(s3_server: Server, tmp_path: Path) -> None:
    large, large_digest = random_file(tmp_path, "large.bin", 9 * MiB)
    small, _ = random_file(tmp_path, "small.bin", 2 * MiB)
    with Client(s3_server.url, direct=False) as client:
        before = received(s3_server)
        record = client.upload(large)
        assert received(s3_server) == (before[0] + 9 * MiB, before[1])
        assert record.sha256 == large_digest, "hashed by the API as it came"
    with Client(s3_server.url) as client:
        before = received(s3_server)
        client.upload(small)
        assert received(s3_server) == (before[0] + 2 * MiB, before[1])
        record = client.upload(large)
        assert received(s3_server) == (before[0] + 2 * MiB, before[1] + 9 * MiB)
        assert (record.status, record.sha256) == ("processing", None)
        ready = client.wait(record.id, timeout=60)
        assert (ready.status, ready.sha256) == ("ready", large_digest)
