"""Writers of every process on one SQLite file take turns through a kernel lock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.helpers import held_by_another_process
from uploads_api.db.engine import create_engines
from uploads_api.db.write_lock import WriteLock


def test_a_second_writer_waits_and_is_woken_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        first, second = WriteLock(tmp_path / "db"), WriteLock(tmp_path / "db")
        try:
            await first.acquire()
            waiter = asyncio.create_task(second.acquire())
            await asyncio.sleep(0.2)
            assert not waiter.done(), "the lock was taken twice"
            released = time.monotonic()
            first.release()
            await asyncio.wait_for(waiter, 5)
            assert time.monotonic() - released < 0.1
            second.release()
        finally:
            first.close()
            second.close()

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_the_lock_free(tmp_path: Path) -> None:
    async def main() -> None:
        first, second, third = (WriteLock(tmp_path / "db") for _ in range(3))
        try:
            await first.acquire()
            waiter = asyncio.create_task(second.acquire())
            await asyncio.sleep(0.1)
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            first.release()
            await asyncio.wait_for(third.acquire(), 5)
            third.release()
        finally:
            for lock in (first, second, third):
                lock.close()

    asyncio.run(main())


def test_a_lock_held_by_a_killed_process_is_released(tmp_path: Path) -> None:
    with held_by_another_process(tmp_path / "db.writer-lock") as holder:

        async def main() -> None:
            lock = WriteLock(tmp_path / "db")
            try:
                waiter = asyncio.create_task(lock.acquire())
                await asyncio.sleep(0.2)
                assert not waiter.done()
                holder.kill()
                await asyncio.wait_for(waiter, 5)
                lock.release()
            finally:
                lock.close()

        asyncio.run(main())


def test_a_writer_stuck_behind_another_process_times_out(tmp_path: Path) -> None:
    async def main() -> None:
        engines = create_engines(f"sqlite+aiosqlite:///{tmp_path}/t.db", busy_timeout=0.3)
        other = WriteLock(tmp_path / "t.db")
        try:
            await other.acquire()
            started = time.monotonic()
            try:
                async with engines.write():
                    raise AssertionError("wrote while another process held the lock")
            except Exception as exc:
                assert "another process held the database" in str(exc)
            assert time.monotonic() - started < 2
            other.release()
            async with engines.write() as connection:
                await connection.exec_driver_sql("CREATE TABLE t (a INTEGER)")
        finally:
            other.close()
            await engines.dispose()

    asyncio.run(main())


def test_a_caller_after_a_cancelled_one_takes_over_its_wait(tmp_path: Path) -> None:
    async def main() -> None:
        other, mine, probe = (WriteLock(tmp_path / "db") for _ in range(3))
        try:
            await other.acquire()
            gave_up = asyncio.create_task(mine.acquire())
            await asyncio.sleep(0.1)
            gave_up.cancel()
            await asyncio.gather(gave_up, return_exceptions=True)
            after = asyncio.create_task(mine.acquire())
            await asyncio.sleep(0.1)
            other.release()
            await asyncio.wait_for(after, 5)
            # Really held: a third descriptor cannot have it until it is released.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(probe.acquire(), 0.3)
            mine.release()
            await asyncio.wait_for(probe.acquire(), 5)
            probe.release()
        finally:
            for lock in (other, mine, probe):
                lock.close()

    asyncio.run(main())
