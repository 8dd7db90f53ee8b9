"""The in-process task runner over a real SQLite repository, with small fake handlers: what
each outcome of a run leaves, retries and their backoff, dispatch and the concurrency bound.
Stopping the runner and task leases: test_runner_stop_and_leases.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.runner_db_helpers import add_file, finished, repository_for, running, wait_for_task
from tests.runner_helpers import TASK, Always, Scripted, settings_for
from uploads_api.db.models import FAILED, READY, SKIPPED, SUCCEEDED, Task
from uploads_api.tasks.base import PermanentError, RetryableError, TaskSkipped
from uploads_api.tasks.runner import backoff_delay


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


def test_an_idle_runner_reads_and_claims_only_what_is_there(tmp_path: Path) -> None:
    """Polled every 0.05 s with nothing to do, the runner asks with a read, not with a
    claim (a write transaction); a task that appears is still claimed and run."""
    settings = settings_for(tmp_path)
    handler = Scripted(None)

    async def main() -> tuple[int, Task]:
        async with repository_for(settings) as repo:
            claims: list[int] = []  # how many tasks each claim took
            claim = repo.queue.claim_tasks

            async def counted(*args: object, **kwargs: object) -> list[Task]:
                taken = await claim(*args, **kwargs)  # type: ignore[arg-type]
                claims.append(len(taken))
                return taken

            repo.queue.claim_tasks = counted  # type: ignore[method-assign]
            async with running(settings, repo, handler):
                # The start's sweep is claimed and run; then a claim finds nothing.
                deadline = time.monotonic() + 10
                while not (claims and claims[-1] == 0) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                before = len(claims)
                await asyncio.sleep(0.6)  # a dozen polls
                idle_claims = len(claims) - before
                file_id = await add_file(repo)
                task = await wait_for_task(repo, file_id, finished)
            return idle_claims, task

    idle_claims, task = asyncio.run(main())
    assert idle_claims == 0
    assert task.state == SUCCEEDED
