"""Direct uploads from the Python client against a fake API and bucket behind httpx's
MockTransport: a large file goes to the bucket in parts, what goes through the API instead,
and failing parts, refusals, lost answers, cancellations and files that change."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.direct_uploads_fake import (
    API,
    BUCKET,
    FAST,
    UPLOAD_ID,
    Answer,
    FakeService,
    upload_with,
)
from tests.helpers import sha256
from uploads_api.client import AsyncClient, Client, Forbidden, Retrying, UploadsClientError

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
