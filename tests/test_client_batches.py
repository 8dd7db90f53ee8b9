"""Batches in the Python clients against httpx's MockTransport: how files are grouped, the
body and headers of a batch, its key kept over retries, a file refused by name left out
and the others sent again (tests/test_e2e_batches.py does the same against a server)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.helpers import record_json, sha256
from uploads_api.client import (
    AsyncClient,
    BadRequest,
    Client,
    PayloadTooLarge,
    RetryPolicy,
    UploadResult,
    batch,
    many_sync,
)
from uploads_api.client.batch import BatchUploader, Event, Retry, Started
from uploads_api.client.batching import BatchLimits, plan
from uploads_api.client.models import FileRecord
from uploads_api.client.sources import sha256_files

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, jitter=False)
KiB = 1024


BY_64 = [list(range(start, min(300, start + 64))) for start in range(0, 300, 64)]


@pytest.mark.parametrize(
    ("sizes", "limits", "spread", "alone", "groups"),
    [
        ([1] * 5, BatchLimits(files=2), 1, [], [[0, 1], [2, 3], [4]]),
        ([1] * 8, BatchLimits(files=64), 4, [], [[0, 1], [2, 3], [4, 5], [6, 7]]),
        ([1] * 300, BatchLimits(files=64), 4, [], BY_64),
        ([40, 40, 40, 10], BatchLimits(bytes=100), 1, [], [[0, 1], [2, 3]]),
        ([10, 200, 10], BatchLimits(bytes=100), 1, [], [[1], [0, 2]]),
        ([10, 10, 10], BatchLimits(), 1, [False, True], [[1], [0, 2]]),
        ([100, 1], BatchLimits(bytes=100), 1, [], [[0], [1]]),
        ([], BatchLimits(), 4, [], []),
    ],
)  # fmt: skip
def test_files_are_grouped_by_count_bytes_and_share(
    sizes: list[int], limits: BatchLimits, spread: int, alone: list[bool], groups: list[list[int]]
) -> None:
    assert sorted(plan(sizes, limits, spread=spread, alone=alone)) == sorted(groups)


Files = list[tuple[str, bytes, str | None]]


def form_files(request: httpx.Request) -> Files:
    """The file parts of a client's multipart body: name, bytes, and the sha256 field
    before it, if any. The body must be exactly as long as announced."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    body = request.read()
    assert len(body) == int(request.headers["content-length"])
    pieces = body.split(b"--" + boundary)
    assert pieces[0] == b"" and pieces[-1] == b"--\r\n"
    files: Files = []
    checksum = None
    for piece in pieces[1:-1]:
        head, _, data = piece[2:-2].partition(b"\r\n\r\n")
        name = re.search(rb'filename="((?:[^"\\]|\\.)*)"', head)
        if name is None:
            checksum = data.decode()
            continue
        files.append((name.group(1).decode().replace('\\"', '"'), data, checksum))
        checksum = None
    return files


class Server:
    """A fake API: answers each batch from a script (a status, or a problem naming a part),
    and records the files and key of every request."""

    def __init__(self, *script: Callable[[Files], httpx.Response]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, list[str]]] = []
        self.bodies: list[bytes] = []
        self.checksums: list[list[str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/v1/files"), request.url
        files = form_files(request)
        self.requests.append((request.headers["idempotency-key"], [name for name, _, _ in files]))
        self.bodies.append(request.read())
        self.checksums.append([checksum for _, _, checksum in files])
        answer = self.script.pop(0) if self.script else stored
        return answer(files)


def stored(files: Files) -> httpx.Response:
    records = [record_json(data, name, os.urandom(16).hex()) for name, data, _ in files]
    return httpx.Response(201, json={"files": records})


def problem(status: int, code: str, **extra: Any) -> Callable[..., httpx.Response]:
    body = {"type": "x", "title": code, "status": status, "detail": "why", "code": code, **extra}
    headers = {"content-type": "application/problem+json", "retry-after": "0"}
    return lambda files: httpx.Response(status, json=body, headers=headers)


def make_files(folder: Path, count: int, size: int = 2 * KiB) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"f{i}.bin" for i in range(count)]
    for path in paths:
        path.write_bytes(os.urandom(size))
    return paths


def test_a_batch_is_one_request_with_a_key_kept_over_retries(tmp_path: Path) -> None:
    paths = make_files(tmp_path, 3)
    server = Server(
        problem(503, "service-unavailable"), problem(409, "idempotency-key-in-progress")
    )
    digest = sha256(paths[1].read_bytes())
    with Client("http://x", transport=httpx.MockTransport(server), retry=FAST, direct=False) as c:
        outcomes = c.upload_batch(paths, sha256s=[None, digest, None])
    names = [o.filename for o in outcomes if isinstance(o, FileRecord)]
    assert names == ["f0.bin", "f1.bin", "f2.bin"]
    keys = {key for key, _ in server.requests}
    assert len(server.requests) == 3 and len(keys) == 1, "one key, reused by the retries"
    assert len(set(server.bodies)) == 1, "each retry sends the batch as it was"
    assert server.checksums[0] == [None, digest, None]


def test_a_throttled_batch_waits_as_told_and_goes_again_as_it_was(tmp_path: Path) -> None:
    paths = make_files(tmp_path, 3)
    body = {"type": "x", "title": "t", "status": 429, "detail": "wait", "code": "too-many-uploads"}
    throttled = httpx.Response(
        429, json=body, headers={"content-type": "application/problem+json", "retry-after": "1"}
    )
    server = Server(lambda files: throttled)
    delays: list[float] = []
    with Client("http://x", transport=httpx.MockTransport(server), retry=FAST, direct=False) as c:
        outcomes = c.upload_batch(paths, on_retry=lambda note, _files: delays.append(note.delay))
    assert all(isinstance(o, FileRecord) for o in outcomes)
    assert delays == [1.0], "the server's Retry-After, not the policy's backoff"
    assert len(server.requests) == 2 and len({key for key, _ in server.requests}) == 1
    assert server.bodies[0] == server.bodies[1]


def test_a_file_refused_by_name_is_left_out_and_the_rest_sent_again(tmp_path: Path) -> None:
    paths = make_files(tmp_path, 4)
    server = Server(
        problem(413, "file-too-large", part=1, filename="f1.bin", limit=10),
        problem(400, "checksum-mismatch", part=2, filename="f3.bin"),
    )
    notices: list[tuple[int, list[int]]] = []
    with Client("http://x", transport=httpx.MockTransport(server), retry=FAST, direct=False) as c:
        outcomes = c.upload_batch(
            paths, on_retry=lambda notice, files: notices.append((notice.tries, list(files)))
        )
    assert [type(o) for o in outcomes] == [FileRecord, PayloadTooLarge, FileRecord, BadRequest]
    assert [names for _, names in server.requests] == [
        ["f0.bin", "f1.bin", "f2.bin", "f3.bin"],
        ["f0.bin", "f2.bin", "f3.bin"],
        ["f0.bin", "f2.bin"],
    ]
    assert len({key for key, _ in server.requests}) == 3, "another request, another key"
    assert notices == []


def test_a_file_gone_before_it_is_sent_is_reported_and_the_rest_go(tmp_path: Path) -> None:
    paths = make_files(tmp_path, 3)
    paths[1].unlink()
    server = Server()

    async def main() -> list[Any]:
        transport = httpx.MockTransport(server)
        async with AsyncClient("http://x", transport=transport, retry=FAST, direct=False) as c:
            return await c.upload_batch(paths)

    outcomes = asyncio.run(main())
    assert isinstance(outcomes[0], FileRecord) and isinstance(outcomes[2], FileRecord)
    assert isinstance(outcomes[1], FileNotFoundError)
    assert [names for _, names in server.requests] == [["f0.bin", "f2.bin"]]


def test_a_refusal_naming_no_part_fails_the_whole_batch(tmp_path: Path) -> None:
    server = Server(problem(400, "malformed-multipart"))
    with (
        Client("http://x", transport=httpx.MockTransport(server), retry=FAST, direct=False) as c,
        pytest.raises(BadRequest),
    ):
        c.upload_batch(make_files(tmp_path, 2))


def test_names_are_quoted_and_one_with_control_characters_goes_alone(tmp_path: Path) -> None:
    odd = [tmp_path / 'say "cheese".bin', tmp_path / "été.bin", tmp_path / "line\nbreak.bin"]
    for path in odd:
        path.write_bytes(os.urandom(100))
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            seen.append(request.url.raw_path.decode())
            name = request.url.path.rsplit("/", 1)[1]
            return httpx.Response(201, json=record_json(request.read(), name))
        return Server()(request)

    with Client("http://x", transport=httpx.MockTransport(answer), direct=False) as client:
        results = client.upload_many(odd, concurrency=1)
    assert [r.outcome for r in results] == ["uploaded"] * 3
    assert [r.record.filename for r in results if r.record][:2] == ['say "cheese".bin', "été.bin"]
    assert seen == ["/v1/files/line%0Abreak.bin"]


def test_the_uploader_reports_each_file_of_a_batch(tmp_path: Path) -> None:
    paths = make_files(tmp_path, 6)
    server = Server(
        problem(503, "service-unavailable"), problem(415, "unsupported-media-type", part=4)
    )
    events: list[Event] = []

    async def main() -> list[Any]:
        transport = httpx.MockTransport(server)
        async with AsyncClient("http://x", transport=transport, retry=FAST, direct=False) as c:
            uploader = BatchUploader(c, concurrency=1, on_event=events.append)
            return await uploader.run(paths)

    results = asyncio.run(main())
    assert [r.outcome for r in results] == ["uploaded"] * 4 + ["failed", "uploaded"]
    assert "unsupported-media-type" in str(results[4].error_json())
    assert [r.tries for r in results] == [2] * 6, "the retry counts for every file it carried"
    assert len(server.requests) == 3
    retries = [e for e in events if isinstance(e, Retry)]
    assert [(e.path.name, e.position, e.carried) for e in retries] == [
        (p.name, i, 6) for i, p in enumerate(paths)
    ]
    assert sorted(e.path.name for e in events if isinstance(e, Started)) == sorted(
        p.name for p in paths
    ), "one Started per file, however many tries"


@pytest.mark.parametrize("uploader", [batch, many_sync], ids=["async", "sync"])
def test_skip_existing_hashes_small_files_a_few_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uploader: ModuleType
) -> None:
    paths = make_files(tmp_path, 6)
    present = {sha256(paths[i].read_bytes()) for i in (0, 3)}
    folder = tmp_path / "not-a-file"  # stat works, open does not: unreadable when hashed
    folder.mkdir()
    paths.append(folder)  # last: its size, which decides its job, depends on the file system
    monkeypatch.setattr(uploader, "HASH_JOB_BYTES", 3 * KiB)
    jobs: list[list[str]] = []

    def recording(files: list[Path], stop: Any = None) -> list[str | OSError]:
        jobs.append([path.name for path in files])
        return sha256_files(files, stop)

    monkeypatch.setattr(uploader, "sha256_files", recording)
    server = Server()
    checks: list[list[str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/files/check":
            asked = json.loads(request.read())["sha256"]
            checks.append(asked)
            return httpx.Response(
                200,
                json={
                    "present": [h for h in asked if h in present],
                    "missing": [h for h in asked if h not in present],
                },
            )
        return server(request)

    async def main() -> list[UploadResult]:
        transport = httpx.MockTransport(answer)
        async with AsyncClient("http://x", transport=transport, retry=FAST, direct=False) as c:
            return await BatchUploader(c, concurrency=2, skip_existing=True).run(paths)

    if uploader is batch:
        results = asyncio.run(main())
    else:
        transport = httpx.MockTransport(answer)
        with Client("http://x", transport=transport, retry=FAST, direct=False) as client:
            results = client.upload_many(paths, concurrency=2, skip_existing=True)
    outcomes = ["skipped", "uploaded", "uploaded", "skipped", "uploaded", "uploaded", "failed"]
    assert [r.outcome for r in results] == outcomes
    assert results[-1].reason is not None and results[-1].reason.startswith("cannot read")
    pairs = [["f0.bin", "f1.bin"], ["f2.bin", "f3.bin"], ["f4.bin", "f5.bin"]]
    assert sorted(jobs) == [*pairs, ["not-a-file"]], "2 KiB files two to a job of 3 KiB"
    assert len(checks) == 1 and len(checks[0]) == 6, "one check for the six files hashed"
    sent = sorted(name for _, names in server.requests for name in names)
    assert sent == ["f1.bin", "f2.bin", "f4.bin", "f5.bin"]
