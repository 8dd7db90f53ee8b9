"""SQLite's one-trip writes: a transaction run whole in the writer thread, taking turns
with the other writes of the process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import Connection, event, text

from uploads_api.db.engine import create_engines


def _count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM marks")).scalar_one())


def _mark(conn: Connection, value: int) -> int:
    conn.execute(text("INSERT INTO marks (value) VALUES (:value)"), {"value": value})
    return _count(conn)


def test_a_begun_transaction_is_waited_for_even_when_its_caller_is_cancelled(
    tmp_path: Path,
) -> None:
    """Its rows are committed in the thread whatever the caller does; a caller that gave up
    would otherwise act as if they were not (remove the files they name)."""

    async def main() -> None:
        engines = create_engines(f"sqlite+aiosqlite:///{tmp_path}/one.db")
        try:
            one_trip = engines.one_trip
            assert one_trip is not None
            await engines.write_in_one_trip(
                lambda conn: conn.execute(text("CREATE TABLE marks (value INTEGER)"))
            )

            @event.listens_for(one_trip.engine, "before_cursor_execute")
            def _slow(*_args: object) -> None:
                time.sleep(0.2)  # in the writer thread: the transaction is under way

            writing = asyncio.create_task(engines.write_in_one_trip(_mark, 1))
            await asyncio.sleep(0.1)
            writing.cancel()
            assert await writing == 1  # the outcome, not a cancellation
            event.remove(one_trip.engine, "before_cursor_execute", _slow)
            # The writer's turn was given back once the transaction ended: writes go on,
            # through either way in.
            assert await engines.write_in_one_trip(_mark, 2) == 2
            async with engines.write() as conn:
                assert await conn.run_sync(_count) == 2
        finally:
            await engines.dispose()

    asyncio.run(main())


def test_writes_through_both_ways_in_at_once_all_land(tmp_path: Path) -> None:
    async def main() -> None:
        engines = create_engines(f"sqlite+aiosqlite:///{tmp_path}/turns.db")
        try:
            await engines.write_in_one_trip(
                lambda conn: conn.execute(text("CREATE TABLE marks (value INTEGER)"))
            )

            async def through_write(value: int) -> None:
                async with engines.write() as conn:
                    await conn.execute(text("INSERT INTO marks (value) VALUES (:v)"), {"v": value})

            await asyncio.gather(
                *(engines.write_in_one_trip(_mark, value) for value in range(50)),
                *(through_write(value) for value in range(50, 100)),
            )
            async with engines.write() as conn:
                assert await conn.run_sync(_count) == 100
        finally:
            await engines.dispose()

    asyncio.run(main())
