"""Faults while files are processed: a server killed mid-thumbnail, a delete racing the
pipeline, and a decoder that kills its worker. The interrupted task runs again, the others
are spared, and nothing half-done may ever become visible."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import imagegen
from tests.conftest import Server, ServerFactory
from tests.db_helpers import Repositories
from tests.helpers import (
    assert_problem,
    blob_files,
    sha256,
    thumbnail_dir,
    wait_done,
    wait_for,
)
from uploads_api.config import Settings
from uploads_api.db.engine import create_engines
from uploads_api.db.models import FAILED, SUCCEEDED, NewFile, Task
from uploads_api.db.schema import ensure_schema
from uploads_api.media.worker import configure_worker
from uploads_api.storage import original_key
from uploads_api.tasks.base import RetryableError
from uploads_api.tasks.pool import ImagePool
from uploads_api.tasks.runner import TaskRunner


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """24 megapixels: slow enough to decode that a test can catch it mid-thumbnail."""
    path = imagegen.jpeg_photo(tmp_path_factory.mktemp("photo"), size=(6000, 4000))
    return path.read_bytes()


# Killed mid-thumbnail, and a delete racing the pipeline --------------------------------------


def _tasks(server: Server, **params: Any) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/tasks", params={"limit": 1000, **params})
    tasks: list[dict[str, Any]] = response.json()["tasks"]
    return tasks


def _upload_copies(server: Server, data: bytes, count: int) -> list[str]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        files = [("file", (f"photo{i}.jpg", data)) for i in range(count)]
        response = http.post("/v1/files", files=files)
        assert response.status_code == 201, response.text
        return [f["id"] for f in response.json()["files"]]


def _running_thumbnail(server: Server, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in _tasks(server, state="running"):
            if task["name"] == "thumbnails":
                return task
        time.sleep(0.01)
    raise AssertionError("no thumbnails task was ever seen running")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_server_killed_mid_thumbnail_runs_the_task_again(
    server_factory: ServerFactory, big_photo: bytes
) -> None:
    server = server_factory(task_concurrency=1, image_workers=1)
    ids = _upload_copies(server, big_photo, 4)
    interrupted = _running_thumbnail(server)
    server.kill()
    server.start()
    with httpx.Client(base_url=server.url, timeout=90) as http:
        for file_id in ids:
            record = wait_done(http, file_id, timeout=60)
            assert record["status"] == "ready", record["tasks"]
            assert [t["size"] for t in record["thumbnails"]] == [256, 1024]
            for thumb in record["thumbnails"]:
                assert http.get(thumb["url"]).status_code == 200
        record = http.get(f"/v1/files/{interrupted['file_id']}").json()
    rerun = next(t for t in record["tasks"] if t["id"] == interrupted["id"])
    assert (rerun["state"], rerun["attempts"]) == ("succeeded", 2)
    work = server.data_dir / "tmp" / "work"
    wait_for(lambda: not any(work.glob("*")), what="scratch space to be cleaned")
    assert server.temp_files() == []


@pytest.mark.e2e
@pytest.mark.slow
def test_a_file_deleted_mid_processing_stays_deleted(
    server_factory: ServerFactory, big_photo: bytes
) -> None:
    server = server_factory(task_concurrency=1, image_workers=1)
    ids = _upload_copies(server, big_photo, 4)
    victim = _running_thumbnail(server)["file_id"]
    assert httpx.delete(f"{server.url}/v1/files/{victim}").status_code == 204

    def settled() -> bool:
        mine = [t for t in _tasks(server) if t["file_id"] == victim]
        return bool(mine) and all(t["state"] not in ("queued", "running") for t in mine)

    wait_for(settled, timeout=60, what="the deleted file's tasks to finish")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for file_id in ids:
            if file_id != victim:
                assert wait_done(http, file_id, timeout=60)["status"] == "ready"
        assert_problem(http.get(f"/v1/files/{victim}"), 404, "not-found")
        assert_problem(http.get(f"/v1/files/{victim}/thumbnails/256"), 404, "not-found")
        assert victim not in {f["id"] for f in http.get("/v1/files").json()["files"]}
    assert not thumbnail_dir(server, victim).exists(), "no thumbnail reappeared"
    assert not any(victim in p.name for p in blob_files(server))
    assert len([p for p in blob_files(server) if "originals" in p.parts]) == len(ids) - 1


# A decoder that kills its worker process -----------------------------------------------------


def test_a_crashed_image_worker_is_replaced() -> None:
    async def main() -> None:
        pool = ImagePool(1, 10_000_000)
        await pool.start()
        try:
            before = await pool.run(os.getpid)
            with pytest.raises(RetryableError, match="a media worker process crashed"):
                await pool.run(os._exit, 1)
            await pool.run(configure_worker, 10)  # a task with arguments, on the new worker
            after = await pool.run(os.getpid)
            assert after != before, "a new worker process took over"
        finally:
            pool.shutdown()

    asyncio.run(main())


class Decode:
    """A thumbnails handler whose decoder kills the worker process for one file."""

    name = "thumbnails"

    def __init__(self, pool: ImagePool, crashing: str) -> None:
        self.pool = pool
        self.crashing = crashing
        self.runs: list[tuple[str | None, int]] = []

    async def run(self, task: Task) -> None:
        self.runs.append((task.file_id, task.attempts))
        if task.file_id == self.crashing:
            await self.pool.run(os._exit, 3)
        else:
            await self.pool.run(configure_worker, 1000)


class Noop:
    name = "cleanup"

    async def run(self, task: Task) -> None:
        return None


def test_a_crashing_decoder_fails_its_task_and_spares_the_others(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        task_retry_base_delay=0.01,
        task_poll_interval=0.05,
        task_lease_seconds=30,
        task_max_attempts=3,
        task_concurrency=1,
    )

    async def add_file(repo: Repositories) -> str:
        file_id = secrets.token_hex(16)
        new = NewFile(
            id=file_id,
            filename="x.png",
            content_type="image/png",
            size=1,
            sha256=sha256(b"x"),
            storage_key=original_key(file_id),
        )
        await repo.files.create_files([new], ("thumbnails",))
        return file_id

    async def main() -> tuple[list[str], dict[str, Task]]:
        engines = create_engines(settings.resolved_database_url)
        pool = ImagePool(1, 10_000_000)
        try:
            await ensure_schema(engines)
            repo = Repositories.over(engines, max_attempts=settings.task_max_attempts)
            await pool.start()
            ids = [await add_file(repo) for _ in range(4)]
            handler = Decode(pool, crashing=ids[1])
            runner = TaskRunner(settings, repo.queue, {"thumbnails": handler, "cleanup": Noop()})
            runner.start()
            try:
                deadline = time.monotonic() + 30
                while True:
                    records = [await repo.files.get_file(i) for i in ids]
                    tasks = {r.id: r.tasks[0] for r in records if r is not None}
                    if all(t.state in (SUCCEEDED, FAILED) for t in tasks.values()):
                        break
                    assert time.monotonic() < deadline, tasks
                    await asyncio.sleep(0.05)
            finally:
                await runner.stop(1)
            assert [a for f, a in handler.runs if f == ids[1]] == [1, 2, 3]
            return ids, tasks
        finally:
            pool.shutdown()
            await engines.dispose()

    ids, tasks = asyncio.run(main())
    crashed = tasks[ids[1]]
    others = [tasks[file_id] for file_id in ids if file_id != ids[1]]
    assert (crashed.state, crashed.attempts) == (FAILED, 3)
    assert crashed.error == "a media worker process crashed"
    assert [(t.state, t.attempts) for t in others] == [(SUCCEEDED, 1)] * 3
