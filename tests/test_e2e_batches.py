"""End to end: batches of small files from the CLI and the Python clients against real
servers: few requests, each file reported once, a refused file left out and the others
stored, a batch whose answer was lost stored once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import imagegen
from tests.conftest import ROOT, Server, ServerFactory
from tests.helpers import cli_env, sha256
from uploads_api.client import AsyncClient, BadRequest, Client, FileRecord
from uploads_api.client.retry import Retrying

pytestmark = pytest.mark.e2e
MAX_FILE_SIZE = 20_000


def metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def requests_of(server: Server) -> float:
    """Upload requests the server answered 201."""
    return metric(server, "uploads_request_duration_seconds_count")


def make_files(folder: Path, count: int, size: int = 1024) -> dict[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for i in range(count):
        path = folder / f"sub{i % 5}" / f"f{i:04d}.bin"
        path.parent.mkdir(exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        made[path] = sha256(data)
    return made


def upload(server: Server, *args: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``uploads-api upload ARGS --json``: the file lines and the summary."""
    done = subprocess.run(
        [sys.executable, "-m", "uploads_api.cli", "upload", *args, "--json", "--url", server.url],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
        cwd=ROOT,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines and lines[-1]["type"] == "summary", done.stdout[-2000:] + done.stderr[-2000:]
    return lines[:-1], lines[-1]


def on_server(server: Server, hashes: set[str]) -> Counter[str]:
    with Client(server.url) as client:
        return Counter(r.sha256 for r in client.list(page_size=1000) if r.sha256 in hashes)


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> Server:
    return module_server_factory(
        max_file_size=MAX_FILE_SIZE, allowed_types="application/octet-stream,text/plain"
    )


def test_500_small_files_go_in_8_requests_and_each_is_reported_once(
    server: Server, tmp_path: Path
) -> None:
    made = make_files(tmp_path / "in", 500)
    before = requests_of(server), metric(server, 'uploads_files_total{route="multipart"}')
    files, summary = upload(server, str(tmp_path / "in"), "-r", "-j", "4")
    assert (summary["uploaded"], summary["failed"], summary["ok"]) == (500, 0, True)
    assert Counter(Path(f["path"]) for f in files) == Counter(made.keys()), "each file once"
    assert {Path(f["path"]): f["sha256"] for f in files} == made
    assert all(f["outcome"] == "uploaded" and f["tries"] == 1 for f in files)
    assert requests_of(server) - before[0] == 8, "64 files to a request"
    assert metric(server, 'uploads_files_total{route="multipart"}') - before[1] == 500
    assert on_server(server, set(made.values())) == Counter(made.values())


def test_batch_bytes_caps_a_request_and_a_larger_file_goes_alone(
    server: Server, tmp_path: Path
) -> None:
    made = make_files(tmp_path / "in", 10, size=4000)
    big = tmp_path / "in" / "big.bin"
    data = os.urandom(15_000)
    big.write_bytes(data)
    made[big] = sha256(data)
    before = requests_of(server)
    files, summary = upload(server, str(tmp_path / "in"), "-r", "--batch-bytes", "10K")
    assert (summary["uploaded"], summary["failed"]) == (11, 0)
    assert {Path(f["path"]): f["sha256"] for f in files} == made
    # 10 files of 4,000 bytes, two to a 10 KiB request: 5 requests, and the larger file alone.
    assert requests_of(server) - before == 6
    assert on_server(server, set(made.values())) == Counter(made.values())


def test_a_file_the_server_refuses_is_left_out_and_the_others_stored(
    server: Server, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    made = make_files(folder, 6)
    (folder / "big.bin").write_bytes(os.urandom(MAX_FILE_SIZE + 1))
    imagegen.jpeg_photo(folder, size=(64, 48))  # image/jpeg: not an allowed type here
    before = requests_of(server)
    files, summary = upload(server, str(folder), "-r", "-j", "1")
    outcome = {Path(f["path"]).name: f for f in files}
    assert (summary["uploaded"], summary["failed"]) == (6, 2)
    assert outcome["big.bin"]["error"]["code"] == "file-too-large"
    assert outcome["photo.jpg"]["error"]["code"] == "unsupported-media-type"
    assert all(outcome[p.name]["outcome"] == "uploaded" for p in made)
    assert requests_of(server) - before == 1, "one batch, sent again twice, stored once"
    assert on_server(server, set(made.values())) == Counter(made.values())


class LosesFirstAnswer(httpx.AsyncBaseTransport):
    """Sends every request; throws away the answer to the first batch, as a connection
    that broke on the way back would."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/files" and not self.lost:
            await response.aread()
            await response.aclose()
            self.lost += 1
            raise httpx.RemoteProtocolError("connection lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_batch_whose_answer_was_lost_is_stored_once(server: Server, tmp_path: Path) -> None:
    made = make_files(tmp_path / "in", 10)
    replays = metric(server, "uploads_idempotent_replays_total")
    notices: list[Retrying] = []

    async def main() -> list[Any]:
        transport = LosesFirstAnswer()
        async with AsyncClient(server.url, transport=transport) as client:
            return await client.upload_batch(
                list(made), on_retry=lambda notice, files: notices.append(notice)
            )

    outcomes = asyncio.run(main())
    assert all(isinstance(o, FileRecord) for o in outcomes), outcomes
    assert [o.sha256 for o in outcomes] == list(made.values())
    assert len(notices) == 1 and notices[0].reason == "connection lost"
    assert metric(server, "uploads_idempotent_replays_total") == replays + 1
    assert on_server(server, set(made.values())) == Counter(made.values()), "stored once"


def test_the_sync_client_batches_and_checks_each_file(server: Server, tmp_path: Path) -> None:
    made = make_files(tmp_path / "in", 10)
    paths = list(made)
    before = requests_of(server)
    with Client(server.url) as client:
        first = client.upload_many(paths[:6], concurrency=2)
        assert [r.outcome for r in first] == ["uploaded"] * 6
        assert requests_of(server) - before == 2
        again = client.upload_many(paths, concurrency=2, skip_existing=True)
        assert [r.outcome for r in again] == ["skipped"] * 6 + ["uploaded"] * 4
        wrong = sha256(b"not these bytes")
        outcomes = client.upload_batch([paths[0], paths[1]], sha256s=[made[paths[0]], wrong])
    assert isinstance(outcomes[0], FileRecord) and outcomes[0].checksum_verified
    assert isinstance(outcomes[1], BadRequest) and outcomes[1].code == "checksum-mismatch"
    counts = on_server(server, set(made.values()))
    assert counts[made[paths[0]]] == 2 and counts[made[paths[1]]] == 1
