"""tus-js-client, the protocol's reference JavaScript client, under Node against a real server
with API keys: a 64 MiB file sent as four parallel partial uploads and joined by
concatenation; uploads abandoned part-way and finished by a second run from the URLs the
client stored; a small file in one request with its metadata; a refusal that comes before
the body is read, which must not leave the client's process hanging.

tests/clients/tus_upload.mjs drives the client. tus-js-client is pinned in
tests/clients/package-lock.json and read from .cache/node (``make test-tools``), never
fetched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Server, ServerFactory
from tests.helpers import (
    bearer,
    create_keys,
    exchange,
    request_head,
    wait_closed,
    wait_done,
    wait_for,
)
from tests.service_fixtures import unavailable

pytestmark = pytest.mark.e2e

SCRIPT = ROOT / "tests" / "clients" / "tus_upload.mjs"
TUS_JS = ROOT / ".cache" / "node" / "node_modules" / "tus-js-client" / "package.json"
MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


def waited(retry: str) -> bool:
    """A retry tus-js-client made because the upload was busy or stood elsewhere (423, 409):
    what a client resuming an upload that another request still writes may meet. Such an
    answer comes before the body is read and closes the connection, so the client may see
    the reset instead of the answer."""
    reset = retry.startswith("no response") and ("ECONNRESET" in retry or "EPIPE" in retry)
    return retry.startswith(("409", "423")) or reset


@dataclass(frozen=True)
class Keyed:
    server: Server
    keys: dict[str, str]

    @property
    def endpoint(self) -> str:
        return f"{self.server.url}/v1/tus/"

    def client(self, owner: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers=bearer(self.keys[owner]), timeout=60)


@pytest.fixture(scope="module")
def tus_js() -> None:
    missing = [str(TUS_JS.relative_to(ROOT))] if not TUS_JS.is_file() else []
    if shutil.which("node") is None:
        missing.append("node")
    if missing:
        unavailable(f"{', '.join(missing)} missing: `make test-tools` installs tus-js-client")


@pytest.fixture(scope="module")
def keyed(tus_js: None, module_server_factory: ServerFactory) -> Keyed:
    server = module_server_factory()
    # One owner per test: each test's list of unfinished uploads is its own.
    keys = create_keys(server.data_dir, "parallel", "resume", "resume-parts", "small", "locked")
    wait_closed(server)
    return Keyed(server, keys)


def run_tus_js(endpoint: str, source: Path, timeout: float = 60, **options: Any) -> dict[str, Any]:
    """One run of tus_upload.mjs; its JSON line. Output is printed for a failure's report."""
    command = ["node", str(SCRIPT), endpoint, str(source), json.dumps(options)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        print(exc.stdout, exc.stderr, sep="\n")
        pytest.fail(f"node had not exited {timeout} s after it started: a connection left open?")
    print(f"$ node {SCRIPT.name} {source.name} {json.dumps(options)} -> exit {done.returncode}")
    print(done.stdout, done.stderr, sep="\n")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == (0 if result["error"] is None else 1)
    return result


def random_file(path: Path, size: int) -> str:
    """``size`` random bytes written to ``path``; their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for start in range(0, size, 8 * MiB):
            piece = os.urandom(min(8 * MiB, size - start))
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest()


def stored_sha256(http: httpx.Client, file_id: str) -> str:
    """The sha256 of the file's bytes as the server sends them."""
    digest = hashlib.sha256()
    with http.stream("GET", f"/v1/files/{file_id}/content") as answer:
        assert answer.status_code == 200
        for piece in answer.iter_bytes():
            digest.update(piece)
    return digest.hexdigest()


def stored_upload(storage: Path) -> dict[str, Any]:
    """The one upload tus-js-client's FileUrlStorage holds."""
    (entry,) = json.loads(storage.read_text()).values()
    assert isinstance(entry, dict)
    return entry


def offset_of(http: httpx.Client, url: str) -> int:
    answer = http.head(url, headers=TUS)
    assert answer.status_code == 200
    return int(answer.headers["upload-offset"])


def assert_file(http: httpx.Client, upload_url: str, size: int, digest: str) -> dict[str, Any]:
    """The file a finished upload became: ready, and exactly the bytes sent."""
    final = http.head(upload_url, headers=TUS)
    assert final.status_code == 200
    assert final.headers["upload-offset"] == final.headers["upload-length"] == str(size)
    record = wait_done(http, final.headers["file-id"])
    assert (record["status"], record["size"], record["sha256"]) == ("ready", size, digest)
    assert stored_sha256(http, record["id"]) == digest
    # Nothing is left unfinished: partial uploads end with the final one.
    assert http.get("/v1/tus/").json()["uploads"] == []
    return record


def test_four_parallel_parts_are_joined_into_one_file(keyed: Keyed, tmp_path: Path) -> None:
    source = tmp_path / "video.bin"
    digest = random_file(source, 64 * MiB)
    result = run_tus_js(
        keyed.endpoint,
        source,
        headers=bearer(keyed.keys["parallel"]),
        parallelUploads=4,
        chunkSize=8 * MiB,
        metadata={"filename": "video.bin"},
    )
    assert result["error"] is None and result["retries"] == []
    assert result["bytesAccepted"] == 64 * MiB
    with keyed.client("parallel") as http:
        record = assert_file(http, result["url"], 64 * MiB, digest)
        assert record["id"] == result["fileId"] and record["filename"] == "video.bin"
        concat = http.head(result["url"], headers=TUS).headers["upload-concat"]
        parts = concat.removeprefix("final;").split()
        assert concat.startswith("final;") and len(parts) == 4
        assert all(http.head(part, headers=TUS).status_code == 404 for part in parts)


def test_an_abandoned_upload_is_finished_by_a_second_run(keyed: Keyed, tmp_path: Path) -> None:
    source, storage = tmp_path / "backup.tar", tmp_path / "tus-urls.json"
    digest = random_file(source, 8 * MiB)
    options: dict[str, Any] = {
        "headers": bearer(keyed.keys["resume"]),
        "chunkSize": MiB,
        "metadata": {"filename": "backup.tar"},
        "urlStorage": str(storage),
    }
    # The client goes away once the server has acknowledged three chunks.
    first = run_tus_js(keyed.endpoint, source, stopAfterBytes=3 * MiB, **options)
    assert first["aborted"] and first["error"] is None and first["fileId"] is None
    assert first["bytesAccepted"] == 3 * MiB
    assert stored_upload(storage)["uploadUrl"] == first["url"]
    with keyed.client("resume") as http:
        assert offset_of(http, first["url"]) == 3 * MiB
        (unfinished,) = http.get("/v1/tus/").json()["uploads"]
        listed = str(http.base_url.join(unfinished["url"]))  # a path, resolved as clients do
        assert (listed, unfinished["offset"]) == (first["url"], 3 * MiB)
        assert unfinished["metadata"] == {"filename": "backup.tar"}

        second = run_tus_js(keyed.endpoint, source, resume=True, **options)
        assert second["error"] is None and second["retries"] == []
        assert second["resumedFrom"] == second["url"] == first["url"]
        assert second["bytesAccepted"] == 5 * MiB  # only what the server did not have
        record = assert_file(http, first["url"], 8 * MiB, digest)
        assert record["id"] == second["fileId"] and record["filename"] == "backup.tar"


def test_abandoned_parallel_parts_are_resumed_and_joined(keyed: Keyed, tmp_path: Path) -> None:
    """Aborted with requests in flight: each part keeps what reached the server, and a second
    run resumes the same partial uploads, which the final upload then names."""
    source, storage = tmp_path / "disk.img", tmp_path / "tus-urls.json"
    size = 16 * MiB
    digest = random_file(source, size)
    options: dict[str, Any] = {
        "headers": bearer(keyed.keys["resume-parts"]),
        "parallelUploads": 4,
        "chunkSize": MiB,
        "urlStorage": str(storage),
    }
    first = run_tus_js(keyed.endpoint, source, stopAfterBytes=5 * MiB, **options)
    assert first["aborted"] and first["error"] is None and first["url"] is None
    parts = stored_upload(storage)["parallelUploadUrls"]
    assert len(parts) == 4

    second = run_tus_js(keyed.endpoint, source, resume=True, **options)
    assert second["error"] is None and second["resumedFrom"] == parts
    # A part's PATCH cut short by the abort may still be finishing as the second run starts.
    assert all(waited(retry) for retry in second["retries"])
    assert second["bytesAccepted"] <= size - 5 * MiB
    with keyed.client("resume-parts") as http:
        assert_file(http, second["url"], size, digest)
        concat = http.head(second["url"], headers=TUS).headers["upload-concat"]
        assert concat == "final;" + " ".join(parts)


@pytest.mark.parametrize(
    "how",
    [
        {},
        {"uploadDataDuringCreation": True},
        {"overridePatchMethod": True},
    ],
    ids=["post-then-patch", "creation-with-upload", "patch-as-post-override"],
)
def test_a_small_file_in_one_request_keeps_its_metadata(
    keyed: Keyed, tmp_path: Path, how: dict[str, bool]
) -> None:
    data = "Grüße aus Node\n".encode() * 200
    source = tmp_path / "greeting.txt"
    source.write_bytes(data)
    result = run_tus_js(
        keyed.endpoint,
        source,
        headers=bearer(keyed.keys["small"]),
        metadata={"filename": "Grüße.txt", "filetype": "text/plain"},
        **how,
    )
    assert result["error"] is None and result["retries"] == []
    assert result["bytesAccepted"] == len(data)
    with keyed.client("small") as http:
        record = assert_file(http, result["url"], len(data), hashlib.sha256(data).hexdigest())
        assert record["id"] == result["fileId"]
        assert record["filename"] == "Grüße.txt"
        assert record["content_type"].startswith("text/plain")


def test_without_the_key_the_client_reports_401(keyed: Keyed, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"no key\n")
    result = run_tus_js(keyed.endpoint, source)
    assert result["error"]["status"] == 401 and result["url"] is None
    assert result["retries"] == []  # tus-js-client retries no 4xx but 409 and 423


def lease_held(server: Server, upload_id: str) -> bool:
    with contextlib.closing(sqlite3.connect(server.data_dir / "uploads.db")) as db:
        row = db.execute("SELECT lease_owner FROM tus_uploads WHERE id = ?", (upload_id,))
        return row.fetchone()[0] is not None


@pytest.fixture
def held_upload(keyed: Keyed, tmp_path: Path) -> Iterator[tuple[str, Path, str, threading.Event]]:
    """An upload of a 10 MiB file whose first PATCH (200 000 bytes, the file's own) stalls
    half-way until the event is set: another request writing it holds its lease. Yields the
    upload's URL, the file, its sha256 and the event."""
    source = tmp_path / "shared.bin"
    digest = random_file(source, 10 * MiB)
    head = source.read_bytes()[:200_000]
    with keyed.client("locked") as http:
        created = http.post("/v1/tus/", headers={**TUS, "Upload-Length": str(10 * MiB)})
        assert created.status_code == 201
        url = str(http.base_url.join(created.headers["location"]))
    release = threading.Event()
    answered: list[int] = []

    def slow_body() -> Iterator[bytes]:
        yield head[:100_000]
        release.wait(20)
        yield head[100_000:]

    def writer() -> None:
        with keyed.client("locked") as http:
            sent = http.patch(url, content=slow_body(), headers={**CHUNK, "Upload-Offset": "0"})
            answered.append(sent.status_code)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        upload_id = url.rsplit("/", 1)[-1]
        wait_for(lambda: lease_held(keyed.server, upload_id), what="the writer to hold the upload")
        yield url, source, digest, release
    finally:
        release.set()
        thread.join(30)
    assert answered == [204]


def test_a_refusal_before_the_body_is_read_closes_the_connection(
    keyed: Keyed, held_upload: tuple[str, Path, str, threading.Event]
) -> None:
    """A PATCH refused before its body is read (here 423: another request writes the upload)
    is answered with ``Connection: close``. Kept open, the connection would wait for the rest
    of a body that Node stops sending once it has its answer: tus-js-client would retry and
    finish, but its process would never exit (nor would the server let the connection go).
    Closed with the body unread, the connection is reset, and the client may see the reset
    before the answer: tus-js-client retries either way."""
    url, source, digest, release = held_upload
    path = url.removeprefix(keyed.server.url)
    refused = exchange(
        keyed.server,
        request_head(
            "PATCH",
            path,
            content_type=CHUNK["Content-Type"],
            length=MiB,
            headers=(
                "Tus-Resumable: 1.0.0",
                "Upload-Offset: 0",
                f"Authorization: Bearer {keyed.keys['locked']}",
            ),
        ),
        b"x" * MiB,
    )
    assert refused.status_code == 423
    assert refused.headers["connection"] == "close"

    # tus-js-client resumes the upload while it is held, meets 423, retries until the other
    # writer is done (a second from now), then sends the rest in one 10 MiB PATCH.
    threading.Timer(1.0, release.set).start()
    result = run_tus_js(
        keyed.endpoint,
        source,
        timeout=30,
        headers=bearer(keyed.keys["locked"]),
        uploadUrl=url,
        retryDelays=[200] * 25,
    )
    assert result["error"] is None
    assert result["retries"] and all(waited(retry) for retry in result["retries"])
    # What it counts as sent in this run starts from the offset of its first HEAD: 200,000
    # once the other writer is done, 0 when it asked while that writer still held the
    # upload (under load the retries can start that early). The bytes are checked below.
    assert result["bytesAccepted"] in (10 * MiB - 200_000, 10 * MiB)
    with keyed.client("locked") as http:
        assert_file(http, url, 10 * MiB, digest)
