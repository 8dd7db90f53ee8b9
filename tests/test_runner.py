"""The in-process task runner over a real SQLite repository, with small fake handlers."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.db_helpers import Repositories
from uploads_api.config import Settings
from uploads_api.db.engine import create_engines
from uploads_api.db.models import FAILED, QUEUED, READY, SKIPPED, SUCCEEDED, NewFile, Task
from uploads_api.db.queue import TaskQueue
from uploads_api.db.schema import ensure_schema
from uploads_api.storage import original_key
from uploads_api.tasks.base import PermanentError, RetryableError, TaskHandler, TaskSkipped
from uploads_api.tasks.runner import TaskRunner, backoff_delay

TASK = "work"
FINAL_STATES = (SUCCEEDED, FAILED, SKIPPED)


class Scripted:
    """Raises the scripted exceptions in turn, then succeeds; records every attempt it saw."""

    def __init__(self, *script: BaseException | None, name: str = TASK) -> None:
        self.name = name
        self.script = list(script)
        self.attempts: list[int] = []
        self.times: list[float] = []

    async def run(self, task: Task) -> None:
        self.attempts.append(task.attempts)
        self.times.append(time.monotonic())
        step = self.script[min(len(self.attempts), len(self.script)) - 1] if self.script else None
        if step is not None:
            raise step


class Always:
    """Raises a fresh copy of the same exception on every attempt."""

    def __init__(self, make: Callable[[], BaseException], name: str = TASK) -> None:
        self.name = name
        self.make = make
        self.attempts: list[int] = []

    async def run(self, task: Task) -> None:
        self.attempts.append(task.attempts)
        raise self.make()


class Sleeper:
    """Runs until cancelled."""

    def __init__(self, name: str = TASK) -> None:
        self.name = name
        self.started = asyncio.Event()
        self.cancelled = False

    async def run(self, task: Task) -> None:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Noop:
    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, task: Task) -> None:
        return None


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "task_retry_base_delay": 0.01,
        "task_poll_interval": 0.05,
        "task_lease_seconds": 30,
        "task_max_attempts": 3,
        "task_concurrency": 4,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


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


def test_retryable_twice_then_success(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    handler = Scripted(RetryableError("busy"), RetryableError("still busy"), None)

    async def main() -> None:
        async with repository_for(settings) as repo:
            file_id = await add_file(repo)
            async with running(settings, repo, handler):
                task = await wait_for_task(repo, file_id, finished)
            assert (task.state, task.attempts, task.error) == (SUCCEEDED, 3, None)
            assert await repo.status_of(file_id) == READY

    asyncio.run(main())
    assert handler.attempts == [1, 2, 3]
    gaps = [b - a for a, b in zip(handler.times, handler.times[1:], strict=False)]
    # Backoff: 0.01 s then 0.02 s at least (the poll interval may add to either).
    assert gaps[0] >= 0.01
    assert gaps[1] >= 0.02


@pytest.mark.parametrize(
    ("make", "max_attempts", "state", "attempts", "error"),
    [
        (lambda: RetryableError("still down"), 3, FAILED, 3, "still down"),
        (lambda: RetryableError("still down"), 1, FAILED, 1, "still down"),
        (lambda: RetryableError(), 2, FAILED, 2, "RetryableError"),
        (lambda: PermanentError("cannot decode"), 3, FAILED, 1, "cannot decode"),
        (lambda: TaskSkipped("not an image"), 3, SKIPPED, 1, "not an image"),
        (lambda: ValueError("bad value"), 3, FAILED, 3, "ValueError: bad value"),
        (lambda: KeyError("k"), 2, FAILED, 2, "KeyError: 'k'"),
    ],
    ids=[
        "retryable",
        "retryable-once",
        "retryable-no-message",
        "permanent",
        "skipped",
        "unexpected",
        "unexpected-keyerror",
    ],
)
def test_outcomes(
    tmp_path: Path,
    make: Callable[[], BaseException],
    max_attempts: int,
    state: str,
    attempts: int,
    error: str,
) -> None:
    settings = settings_for(tmp_path, task_max_attempts=max_attempts)
    handler = Always(make)

    async def main() -> None:
        async with repository_for(settings) as repo:
            file_id = await add_file(repo)
            async with running(settings, repo, handler):
                task = await wait_for_task(repo, file_id, finished)
            assert (task.state, task.attempts, task.max_attempts) == (state, attempts, max_attempts)
            assert task.error == error
            assert task.lease_owner is None
            assert task.finished_at is not None
            expected_status = "failed" if state == FAILED else READY
            assert await repo.status_of(file_id) == expected_status

    asyncio.run(main())
    assert handler.attempts == list(range(1, attempts + 1))


def test_a_task_without_a_handler_fails_at_once(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)

    async def main() -> None:
        async with repository_for(settings) as repo:
            file_id = await add_file(repo, "unheard-of")
            async with running(settings, repo):
                task = await wait_for_task(repo, file_id, finished)
            assert (task.state, task.attempts) == (FAILED, 1)
            assert task.error == "no handler for task 'unheard-of'"

    asyncio.run(main())


def test_dispatch_wakes_the_runner_before_the_poll_interval(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, task_poll_interval=30, task_lease_seconds=300)
    handler = Scripted()

    async def main() -> None:
        async with repository_for(settings) as repo, running(settings, repo, handler) as runner:
            await asyncio.sleep(0.2)  # the runner is now idle, waiting out its poll interval
            file_id = await add_file(repo)
            started = time.monotonic()
            await runner.dispatch([file_id])
            task = await wait_for_task(repo, file_id, finished, timeout=10)
            assert task.state == SUCCEEDED
            assert time.monotonic() - started < 5

    asyncio.run(main())


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, task_concurrency=2)
    live = 0
    peak = 0

    class Counting:
        name = TASK

        async def run(self, task: Task) -> None:
            nonlocal live, peak
            live += 1
            peak = max(peak, live)
            await asyncio.sleep(0.05)
            live -= 1

    async def main() -> None:
        async with repository_for(settings) as repo:
            ids = [await add_file(repo) for _ in range(6)]
            async with running(settings, repo, Counting()):
                for file_id in ids:
                    await wait_for_task(repo, file_id, finished)

    asyncio.run(main())
    assert peak == 2


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


@pytest.mark.parametrize(
    ("base", "attempts", "expected"),
    [
        (0.5, 0, 0.5),
        (0.5, 1, 0.5),
        (0.5, 2, 1.0),
        (0.5, 3, 2.0),
        (0.5, 6, 16.0),
        (2.0, 4, 16.0),
        (0.0, 5, 0.0),
    ],
)
def test_backoff_delay_grows_exponentially(
    tmp_path: Path, base: float, attempts: int, expected: float
) -> None:
    settings = settings_for(tmp_path, task_retry_base_delay=base)
    assert backoff_delay(settings, attempts) == pytest.approx(expected)
    if attempts >= 1 and base > 0:
        assert backoff_delay(settings, attempts + 1) == pytest.approx(2 * expected)


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
