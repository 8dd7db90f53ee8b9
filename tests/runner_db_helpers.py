"""Helpers for the task runner's tests over a real SQLite repository: the repository, a
runner running while a block runs, files with one task each, and waiting for a task."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from tests.db_helpers import Repositories
from tests.runner_helpers import TASK, Noop
from uploads_api.config import Settings
from uploads_api.db.engine import create_engines
from uploads_api.db.models import FAILED, SKIPPED, SUCCEEDED, NewFile, Task
from uploads_api.db.schema import ensure_schema
from uploads_api.storage import original_key
from uploads_api.tasks.base import TaskHandler
from uploads_api.tasks.runner import TaskRunner

FINAL_STATES = (SUCCEEDED, FAILED, SKIPPED)


@asynccontextmanager
async def repository_for(settings: Settings) -> AsyncIterator[Repositories]:
    engines = create_engines(settings.resolved_database_url)
    try:
        await ensure_schema(engines)
        yield Repositories.over(engines, max_attempts=settings.task_max_attempts)
    finally:
        await engines.dispose()


@asynccontextmanager
async def running(
    settings: Settings, repo: Repositories, *handlers: TaskHandler, grace: float = 1
) -> AsyncIterator[TaskRunner]:
    # The runner queues a sweep (a cleanup task) as it starts; a no-op takes it.
    table: dict[str, TaskHandler] = {"cleanup": Noop("cleanup")}
    table.update({handler.name: handler for handler in handlers})
    runner = TaskRunner(settings, repo.queue, table)
    runner.start()
    try:
        yield runner
    finally:
        await runner.stop(grace)


async def add_file(repo: Repositories, task_name: str = TASK) -> str:
    file_id = secrets.token_hex(16)
    await repo.files.create_files(
        [
            NewFile(
                id=file_id,
                filename="a.txt",
                content_type="text/plain",
                size=1,
                sha256=hashlib.sha256(b"a").hexdigest(),
                storage_key=original_key(file_id),
            )
        ],
        (task_name,),
    )
    return file_id


async def wait_for_task(
    repo: Repositories, file_id: str, done: Callable[[Task], bool], timeout: float = 15
) -> Task:
    deadline = time.monotonic() + timeout
    while True:
        record = await repo.files.get_file(file_id)
        assert record is not None
        (task,) = record.tasks
        if done(task):
            return task
        assert time.monotonic() < deadline, f"task never got there: {task}"
        await asyncio.sleep(0.02)


def finished(task: Task) -> bool:
    return task.state in FINAL_STATES
