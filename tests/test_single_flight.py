"""SingleFlight: callers of one key share one run, and runs holding one lock directory take
turns (two instances stand for two processes: an ``flock`` on a file opened twice
conflicts even within one process)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers import held_by_another_process
from uploads_api.tasks.single_flight import SingleFlight


def test_callers_of_one_key_share_one_run_and_its_error(tmp_path: Path) -> None:
    async def main() -> None:
        flight = SingleFlight(tmp_path, wait_limit=5)
        runs = 0

        async def work() -> str:
            nonlocal runs
            runs += 1
            await asyncio.sleep(0.05)
            return "made"

        assert await asyncio.gather(*(flight.run("k", work) for _ in range(20))) == ["made"] * 20
        assert runs == 1
        await flight.run("k", work)  # a later call runs again: nothing is cached here
        assert runs == 2

        async def broken() -> str:
            await asyncio.sleep(0.05)
            raise ValueError("refused")

        results = await asyncio.gather(
            *(flight.run("bad", broken) for _ in range(3)), return_exceptions=True
        )
        assert [str(r) for r in results] == ["refused"] * 3

    asyncio.run(main())


def test_a_caller_that_goes_away_leaves_the_run_to_the_others(tmp_path: Path) -> None:
    async def main() -> None:
        flight = SingleFlight(tmp_path, wait_limit=5)
        finished = asyncio.Event()

        async def work() -> int:
            await asyncio.sleep(0.1)
            finished.set()
            return 7

        first = asyncio.ensure_future(flight.run("k", work))
        second = asyncio.ensure_future(flight.run("k", work))
        await asyncio.sleep(0.02)
        first.cancel()
        assert await second == 7
        assert finished.is_set()
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(main())


def test_processes_take_turns_and_the_second_finds_the_work_done(tmp_path: Path) -> None:
    async def main() -> None:
        one, two = (SingleFlight(tmp_path, wait_limit=5) for _ in range(2))
        made: list[str] = []
        inside = 0

        async def work() -> str:
            nonlocal inside
            inside += 1
            assert inside == 1, "two runs held the lock at once"
            try:
                if not made:  # as the variant service looks in storage first
                    await asyncio.sleep(0.1)
                    made.append("bytes")
                return made[0]
            finally:
                inside -= 1

        results = await asyncio.gather(one.run("k", work), two.run("k", work))
        assert list(results) == ["bytes", "bytes"] and made == ["bytes"]

    asyncio.run(main())


def test_a_lock_held_too_long_is_given_up_on(tmp_path: Path) -> None:
    """A stuck holder delays the work by ``wait_limit``, and stops nothing."""

    async def main() -> None:
        flight = SingleFlight(tmp_path, wait_limit=0.3)
        started = asyncio.get_running_loop().time()

        async def work() -> str:
            return "done"

        assert await flight.run("k", work) == "done"
        assert asyncio.get_running_loop().time() - started >= 0.3

    with held_by_another_process(SingleFlight(tmp_path, wait_limit=0).lock_file("k")):
        asyncio.run(main())
