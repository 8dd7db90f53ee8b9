"""The in-process task runner over a real SQLite repository, with small fake handlers:
stopping it (a running task is put back, or finishes within the grace period) and task
leases (renewed while a task runs; an outcome never recorded runs again after the lease)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

import pytest

from tests.runner_db_helpers import add_file, finished, repository_for, running, wait_for_task
from tests.runner_helpers import TASK, Noop, Scripted, Sleeper, settings_for
from uploads_api.db.models import QUEUED, SUCCEEDED, Task
from uploads_api.db.queue import TaskQueue
from uploads_api.tasks.runner import TaskRunner


def test_stop_puts_a_running_task_back_with_its_attempt_refunded(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    sleeper = Sleeper()
    follow_up = Scripted()

    async def main() -> None:
        async with repository_for(settings) as repo:
            file_id = await add_file(repo)
            runner = TaskRunner(settings, repo.queue, {TASK: sleeper, "cleanup": Noop("cleanup")})
            runner.start()
            await asyncio.wait_for(sleeper.started.wait(), 10)
            began = time.monotonic()
            await runner.stop(0.2)
            assert time.monotonic() - began < 5
            assert sleeper.cancelled
            record = await repo.files.get_file(file_id)
            assert record is not None
            (task,) = record.tasks
            assert (task.state, task.attempts, task.lease_owner) == (QUEUED, 0, None)

            # Another process picks it up later, with its full budget.
            async with running(settings, repo, follow_up):
                task = await wait_for_task(repo, file_id, finished)
            assert (task.state, task.attempts) == (SUCCEEDED, 1)

    asyncio.run(main())
    assert follow_up.attempts == [1]


def test_a_cancelled_run_is_not_reported_as_succeeded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tmp_path)
    sleeper = Sleeper()

    async def main() -> None:
        async with repository_for(settings) as repo:
            await add_file(repo)
            runner = TaskRunner(settings, repo.queue, {TASK: sleeper, "cleanup": Noop("cleanup")})
            runner.start()
            await asyncio.wait_for(sleeper.started.wait(), 10)
            await runner.stop(0.1)

    with caplog.at_level(logging.INFO, logger="uploads_api.tasks.runner"):
        asyncio.run(main())
    outcomes = [
        getattr(r, "outcome", None) for r in caplog.records if getattr(r, "task", "") == TASK
    ]
    assert outcomes == ["interrupted"]


def test_stop_lets_a_run_finish_within_the_grace_period(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)

    class Slow:
        name = TASK

        def __init__(self) -> None:
            self.started = asyncio.Event()

        async def run(self, task: Task) -> None:
            self.started.set()
            await asyncio.sleep(0.2)

    async def main() -> None:
        async with repository_for(settings) as repo:
            file_id = await add_file(repo)
            slow = Slow()
            runner = TaskRunner(settings, repo.queue, {TASK: slow, "cleanup": Noop("cleanup")})
            runner.start()
            await asyncio.wait_for(slow.started.wait(), 10)
            await runner.stop(5)
            task = await wait_for_task(repo, file_id, lambda t: True)
            assert (task.state, task.attempts) == (SUCCEEDED, 1)

    asyncio.run(main())


def test_leases_are_renewed_while_a_long_task_runs(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, task_lease_seconds=0.3, task_poll_interval=0.05)
    calls: list[str] = []

    class Long:
        name = TASK

        def __init__(self, label: str) -> None:
            self.label = label

        async def run(self, task: Task) -> None:
            calls.append(self.label)
            await asyncio.sleep(1.0)  # more than three leases

    async def main() -> None:
        async with repository_for(settings) as repo:
            file_id = await add_file(repo)
            async with (
                running(settings, repo, Long("first")),
                running(settings, repo, Long("second")),
            ):
                task = await wait_for_task(repo, file_id, finished)
            assert (task.state, task.attempts) == (SUCCEEDED, 1)

    asyncio.run(main())
    assert len(calls) == 1


def test_an_unrecorded_outcome_runs_again_after_the_lease(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, task_lease_seconds=0.3, task_poll_interval=0.05)
    handler = Scripted()

    class FlakyQueue(TaskQueue):
        failures = 1

        async def finish_task(self, task: Task, worker: str, state: str, error: str | None) -> bool:
            if task.name == TASK and self.failures:
                self.failures -= 1
                raise ConnectionError("database went away")
            return await super().finish_task(task, worker, state, error)

    async def main() -> None:
        async with repository_for(settings) as plain:
            flaky = FlakyQueue(
                plain.engines, plain.queue.events, max_attempts=settings.task_max_attempts
            )
            repo = dataclasses.replace(plain, queue=flaky)
            file_id = await add_file(repo)
            async with running(settings, repo, handler):
                task = await wait_for_task(repo, file_id, finished)
            assert (task.state, task.attempts) == (SUCCEEDED, 2)

    asyncio.run(main())
    assert handler.attempts == [1, 2]
