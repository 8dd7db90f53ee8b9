"""End to end: uploads over real sockets to a real server, downloads, listing, deletion.

Tests that look only at their own files share one server (``shared_server``); those that
count what a server holds (the listing, the metrics) start their own."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import imagegen
from tests.conftest import Server
from tests.helpers import wait_done

pytestmark = pytest.mark.e2e


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_multi_file_upload_and_byte_exact_download(
    shared_server: Server, tmp_path: Path
) -> None:
    server = shared_server
    photo = imagegen.jpeg_photo(tmp_path, size=(800, 600))
    text = tmp_path / "notes.txt"
    text.write_text("hello uploads\n" * 1000)
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-f",
            "-F",
            f"file=@{photo}",
            "-F",
            f"file=@{text}",
            f"{server.url}/v1/files",
        ],
        check=True,
        capture_output=True,
    )
    files = httpx.Response(201, content=out.stdout).json()["files"]
    assert [f["filename"] for f in files] == [photo.name, "notes.txt"]
    assert [f["content_type"] for f in files] == ["image/jpeg", "text/plain"]
    with httpx.Client(base_url=server.url) as client:
        for record, source in zip(files, [photo, text], strict=True):
            assert record["sha256"] == sha256_of(source)
            assert record["size"] == source.stat().st_size
            download = client.get(record["links"]["content"])
            assert download.status_code == 200
            assert download.content == source.read_bytes()
            assert download.headers["etag"] == f'"{record["sha256"]}"'
            assert download.headers["x-content-type-options"] == "nosniff"
            assert download.headers["content-disposition"].startswith("attachment;")
            assert f"filename*=UTF-8''{source.name}" in download.headers["content-disposition"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_raw_put(shared_server: Server, tmp_path: Path) -> None:
    server = shared_server
    payload = tmp_path / "data.bin"
    payload.write_bytes(bytes(range(256)) * 4096 + b"tail")
    out = subprocess.run(
        ["curl", "-sS", "-f", "-T", str(payload), f"{server.url}/v1/files/"],
        check=True,
        capture_output=True,
    )
    record = httpx.Response(201, content=out.stdout).json()
    assert record["filename"] == "data.bin"
    assert record["sha256"] == sha256_of(payload)
    assert record["content_type"] == "application/octet-stream"
    body = httpx.get(f"{server.url}{record['links']['content']}").content
    assert body == payload.read_bytes()


def test_raw_put_name_is_cleaned(shared_client: httpx.Client) -> None:
    client = shared_client
    response = client.put("/v1/files/%E2%80%AEgpj.exe", content=b"plain text here")
    assert response.status_code == 201
    assert response.json()["filename"] == "gpj.exe"


def test_range_requests_and_conditional_get(shared_client: httpx.Client) -> None:
    client = shared_client
    data = bytes(range(256)) * 100
    record = client.put("/v1/files/r.bin", content=data).json()
    url = record["links"]["content"]
    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    suffix = client.get(url, headers={"Range": "bytes=-5"})
    assert suffix.content == data[-5:]
    beyond = client.get(url, headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-type"] == "application/problem+json"
    cached = client.get(url, headers={"If-None-Match": f'"{record["sha256"]}"'})
    assert cached.status_code == 304


def test_list_pagination_and_filters(client: httpx.Client) -> None:
    ids = [
        client.put(f"/v1/files/n{i}.txt", content=f"file {i}".encode()).json()["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/files", params=params).json()
        seen += [f["id"] for f in page["files"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    digest = hashlib.sha256(b"file 3").hexdigest()
    by_hash = client.get("/v1/files", params={"sha256": digest}).json()["files"]
    assert [f["id"] for f in by_hash] == [ids[3]]
    for file_id in ids:
        wait_done(client, file_id)
    ready = client.get("/v1/files", params={"status": "ready"}).json()["files"]
    assert {f["id"] for f in ready} == set(ids)
    assert client.get("/v1/files", params={"status": "nonsense"}).status_code == 422


def test_delete_removes_record_then_bytes(
    shared_client: httpx.Client, shared_server: Server, tmp_path: Path
) -> None:
    client, server = shared_client, shared_server
    photo = imagegen.jpeg_photo(tmp_path, size=(600, 400))
    record = client.post("/v1/files", files={"file": (photo.name, photo.read_bytes())}).json()[
        "files"
    ][0]
    record = wait_done(client, record["id"])
    assert record["thumbnails"]
    blobs = server.data_dir / "blobs"
    assert any(blobs.rglob(record["id"] + "*")), "original and thumbnails are on disk"
    assert client.delete(f"/v1/files/{record['id']}").status_code == 204
    assert client.get(f"/v1/files/{record['id']}").status_code == 404
    assert client.get(record["links"]["content"]).status_code == 404
    assert client.delete(f"/v1/files/{record['id']}").status_code == 404
    tasks = _wait_for_cleanup(client, record["id"])
    assert tasks and all(t["state"] == "succeeded" for t in tasks)
    assert not list(blobs.rglob(record["id"] + "*"))


def _wait_for_cleanup(client: httpx.Client, file_id: str) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tasks = client.get("/v1/tasks", params={"limit": 1000}).json()["tasks"]
        mine = [t for t in tasks if t["file_id"] == file_id and t["name"] == "cleanup"]
        if mine and all(t["state"] not in ("queued", "running") for t in mine):
            return mine
        time.sleep(0.1)
    raise AssertionError("cleanup did not finish")


def test_unknown_ids_and_errors_are_problem_json(shared_client: httpx.Client) -> None:
    client = shared_client
    for path in (
        "/v1/files/" + "0" * 32,
        "/v1/files/not-an-id",
        "/v1/files/../../etc/passwd",
        "/nope",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 404
        assert problem["title"] and problem["type"]


def test_health_ready_metrics_and_openapi(client: httpx.Client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}
    client.put("/v1/files/m.txt", content=b"count me")
    metrics = client.get("/metrics").text
    assert 'uploads_files_total{route="raw"} 1.0' in metrics
    assert "uploads_tasks_queued" in metrics
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/files"]["post"]["requestBody"]["content"]
    assert (
        body["multipart/form-data"]["schema"]["properties"]["file"]["items"]["format"] == "binary"
    )
    for path in ("/v1/files/{file}", "/v1/files/{file_id}/content", "/v1/tasks", "/readyz"):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_check_tells_which_hashes_are_present(shared_client: httpx.Client) -> None:
    client = shared_client
    stored = client.put("/v1/files/a.txt", content=b"already here").json()["sha256"]
    absent = hashlib.sha256(b"never sent").hexdigest()
    answer = client.post("/v1/files/check", json={"sha256": [absent, stored.upper(), stored]})
    assert answer.status_code == 200
    assert answer.json() == {"present": [stored], "missing": [absent]}
    bad = client.post("/v1/files/check", json={"sha256": ["zz"]})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
