"""End to end: several server processes, graceful shutdown, logs, task monitoring."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests import imagegen
from tests.conftest import ServerFactory

pytestmark = pytest.mark.e2e
CLI = Path(sys.executable).parent / "uploads-api"


def upload_many(client: httpx.Client, paths: list[Path]) -> list[str]:
    ids = []
    for path in paths:
        response = client.post("/v1/files", files={"file": (path.name, path.read_bytes())})
        assert response.status_code == 201, response.text
        ids.append(response.json()["files"][0]["id"])
    return ids


def test_two_server_processes_never_run_a_task_twice(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(workers=2)
    photos = [imagegen.jpeg_photo(tmp_path / str(i), size=(900, 600)) for i in range(12)]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        ids = upload_many(client, photos)
        for file_id in ids:
            record = client.get(f"/v1/files/{file_id}", params={"wait": 60}).json()
            assert record["status"] == "ready"
            assert all(t["attempts"] == 1 for t in record["tasks"]), record["tasks"]
    runs = Counter(
        re.findall(r"task \w+ file=\w+ task_id=(\d+) attempt=\d+ outcome=", server.logs())
    )
    assert runs, "task runs are logged"
    assert max(runs.values()) == 1, "no task ran twice"
    pids = set(re.findall(r"Started server process \[(\d+)\]", server.logs()))
    assert len(pids) == 2


def test_sigterm_lets_running_work_finish_and_keeps_the_rest_queued(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(task_concurrency=1, image_workers=1, shutdown_grace_seconds=1)
    photos = [imagegen.jpeg_photo(tmp_path / str(i), size=(3000, 2000)) for i in range(6)]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        ids = upload_many(client, photos)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(30)
    # uvicorn re-raises SIGTERM once shut down, so the exit status reports the signal.
    assert server.process.returncode in (0, -signal.SIGTERM)
    assert "Finished server process" in server.logs()
    with sqlite3.connect(server.data_dir / "uploads.db") as db:
        states = Counter(state for (state,) in db.execute("select state from tasks"))
    assert states["running"] == 0, "nothing is left claimed by the stopped process"
    assert states["queued"] > 0, "unfinished work stays queued for the next start"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")
    server.start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for file_id in ids:
            assert (
                client.get(f"/v1/files/{file_id}", params={"wait": 60}).json()["status"] == "ready"
            )


def test_json_logs_have_one_line_per_request_and_task(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(log_format="json")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        (file_id,) = upload_many(client, [imagegen.jpeg_photo(tmp_path, size=(300, 200))])
        client.get(f"/v1/files/{file_id}", params={"wait": 30})
    entries = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    requests = [e for e in entries if e.get("path") == "/v1/files" and e.get("method") == "POST"]
    assert requests and requests[0]["status"] == 201 and requests[0]["duration_ms"] > 0
    tasks = [e for e in entries if e.get("file_id") == file_id and "outcome" in e]
    assert {e["task"] for e in tasks} == {"metadata", "thumbnails", "cleanup"}
    assert all(e["attempt"] == 1 and e["outcome"] == "succeeded" for e in tasks)


def test_task_monitoring_pages_and_filters(server_factory: ServerFactory) -> None:
    server = server_factory()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ids = [client.put(f"/v1/files/{i}.txt", content=b"x").json()["id"] for i in range(3)]
        for file_id in ids:
            client.get(f"/v1/files/{file_id}", params={"wait": 30})
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor is not None else {})}
            page = client.get("/v1/tasks", params=params)
            assert page.status_code == 200, page.text
            seen += page.json()["tasks"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        mine = [t for t in seen if t["file_id"] in ids]
        assert len(mine) == 9
        assert len({t["id"] for t in seen}) == len(seen)
        skipped = client.get("/v1/tasks", params={"state": "skipped"}).json()["tasks"]
        assert {t["file_id"] for t in skipped} == set(ids)
        # A text file has no thumbnails, and with nothing run there is nothing to clean.
        assert sorted(t["name"] for t in skipped) == ["cleanup"] * 3 + ["thumbnails"] * 3


def test_cli_sweep_and_help(tmp_path: Path) -> None:
    stale = tmp_path / "tmp" / "old.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    out = subprocess.run(
        [str(CLI), "sweep", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "removed 1 temp entries" in out.stdout
    assert not stale.exists()
    usage = subprocess.run(
        [str(CLI), "serve", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--host", "--port", "--data-dir", "--workers"):
        assert flag in usage.stdout
