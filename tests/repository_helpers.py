"""The repository tests' fixture and shortcuts: ``with_repo`` runs a test's body against a
fresh database of each kind, and the bodies add files and read their tasks.
A plugin of ``tests/conftest.py``: the fixture reaches every test module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.db_helpers import Repositories, new_file, open_repository
from uploads_api.db.models import NewFile, Task

Body = Callable[[Repositories], Awaitable[None]]


@pytest.fixture
def with_repo(database_url: str) -> Callable[..., None]:
    def run(body: Body, *, max_attempts: int = 3) -> None:
        async def main() -> None:
            async with open_repository(database_url, max_attempts=max_attempts) as repo:
                await body(repo)

        asyncio.run(main())

    return run


async def add_files(repo: Repositories, count: int, tasks: tuple[str, ...] = ()) -> list[NewFile]:
    files = [new_file() for _ in range(count)]
    for item in files:
        await repo.files.create_files([item], tasks)
    return files


async def task_of(repo: Repositories, file_id: str, name: str) -> Task:
    record = await repo.files.get_file(file_id)
    assert record is not None
    (task,) = [task for task in record.tasks if task.name == name]
    return task


async def all_tasks(repo: Repositories) -> list[Task]:
    return sorted(
        await repo.queue.list_tasks(state=None, limit=10_000, after_id=None), key=lambda t: t.id
    )
