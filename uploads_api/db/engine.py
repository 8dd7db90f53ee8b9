"""Async engines for SQLite (WAL, durable commits) and PostgreSQL, from one URL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, make_url, select
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from uploads_api.db.write_lock import WriteLock

Params = ParamSpec("Params")
Out = TypeVar("Out")


@dataclass(frozen=True)
class Engines:
    """``writer`` runs transactions that write; ``reader`` runs reads that never block writers."""

    writer: AsyncEngine
    reader: AsyncEngine
    # SQLite: taken by every write transaction of every process on the file.
    write_lock: WriteLock | None = None
    lock_timeout: float = 30.0
    # SQLite on disk: batches of writes (uploads arriving together) in one trip, see OneTrip.
    one_trip: OneTrip | None = None
    # This process's writers, in turn: (the event loop, its lock), one loop at a time.
    _writers: list[tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends (rolled back if it raises)."""
        async with self.writer.connect() as connection:
            if self.write_lock is None:
                async with connection.begin():
                    yield connection
                return
            async with self._writer_turn(), connection.begin():
                yield connection

    async def write_in_one_trip(
        self,
        work: Callable[Concatenate[Connection, Params], Out],
        *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> Out:
        """``work(connection, *args, **kwargs)`` as a write transaction, committed once it
        returns. On a SQLite file it runs whole in the thread of ``one_trip``; elsewhere as
        ``write``'s statements do, each a trip to the driver."""
        if self.one_trip is None:
            async with self.write() as connection:
                return await connection.run_sync(work, *args, **kwargs)
        async with self._writer_turn():
            return await self.one_trip.run(lambda connection: work(connection, *args, **kwargs))

    @contextlib.asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        """This process's turn to write, then the file's (SQLite): the lock is per process,
        so the writers of one process take turns first."""
        assert self.write_lock is not None
        loop = asyncio.get_running_loop()
        if not self._writers or self._writers[0][0] is not loop:
            self._writers[:] = [(loop, asyncio.Lock())]
        async with self._writers[0][1]:
            try:
                async with asyncio.timeout(self.lock_timeout):
                    await self.write_lock.acquire()
            except TimeoutError as exc:
                raise PoolTimeout(
                    f"another process held the database for {self.lock_timeout:g} s"
                ) from exc
            try:
                yield
            finally:
                self.write_lock.release()

    async def ping(self) -> None:
        """Raise if the database cannot answer a query (readiness)."""
        async with self.reader.connect() as connection:
            await connection.execute(select(1))

    async def dispose(self) -> None:
        if self.one_trip is not None:
            await asyncio.to_thread(self.one_trip.close)
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()
        if self.write_lock is not None:
            self.write_lock.close()


def _switch_to_wal(cursor: Any, busy_timeout: float) -> None:
    """WAL mode. Switching a new file takes an exclusive lock, and SQLite answers "locked"
    at once, without its busy handler, while another connection starting (or migrating)
    beside this one holds a lock: try again until the busy timeout."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sqlite_engine(url: str, *, writer: bool, busy_timeout: float) -> AsyncEngine:
    if writer:
        # One writer connection per process: SQLite admits one writer at a time anyway, and
        # waiting for the pool is a fair queue, where SQLite's busy handler sleeps with
        # backoff and left the slowest of 16 concurrent commits waiting for seconds. Every use
        # of it is a transaction ended by its own commit or rollback (``write``): the pool's
        # rollback on return would be one more trip to the driver's thread.
        engine = create_async_engine(
            url, pool_size=1, max_overflow=0, pool_timeout=busy_timeout, pool_reset_on_return=None
        )
    else:
        engine = create_async_engine(url, pool_size=8, max_overflow=8)

    _configure(engine.sync_engine, writer=writer, busy_timeout=busy_timeout)
    return engine


def _configure(engine: Engine, *, writer: bool, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        _switch_to_wal(cursor, busy_timeout)
        # FULL: a commit survives power loss, not only a killed process.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so two processes never deadlock upgrading
        # a read lock; WAL keeps readers going meanwhile.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


class OneTrip:
    """SQLite: write transactions run whole in a thread of their own, through the standard
    driver. Through aiosqlite every statement is three or four trips between the event loop
    and the driver's thread (cursor, execute, fetch, close), each waiting for a turn of a
    busy loop: a batch of uploads' inserts took about 16 ms that way, most of it waiting.
    Used under ``Engines._writer_turn``, like every write."""

    def __init__(self, url: str, busy_timeout: float) -> None:
        sync_url = make_url(url).set(drivername="sqlite")
        # One thread, one connection: the writers take turns anyway.
        self.engine = create_engine(
            sync_url,
            pool_size=1,
            max_overflow=0,
            connect_args={"check_same_thread": False},
        )
        _configure(self.engine, writer=True, busy_timeout=busy_timeout)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writes")

    def _transact(self, work: Callable[[Connection], Out]) -> Out:
        with self.engine.begin() as connection:
            return work(connection)

    async def run(self, work: Callable[[Connection], Out]) -> Out:
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._thread, self._transact, work)
        while True:
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                if done.done():
                    raise
                # Begun is as good as done: the transaction ends in its thread either way,
                # and the caller must act on its outcome (rows it thinks were never written
                # would lose their files), so it waits for it. The writer's turn is held
                # until then too.

    def close(self) -> None:
        self.engine.dispose()
        self._thread.shutdown(wait=True)


def create_engines(url: str, *, busy_timeout: float = 30.0) -> Engines:
    """``busy_timeout``: how long a statement waits for a lock before giving up (SQLite)."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        on_disk = bool(database) and database != ":memory:"
        return Engines(
            writer=_sqlite_engine(url, writer=True, busy_timeout=busy_timeout),
            reader=_sqlite_engine(url, writer=False, busy_timeout=busy_timeout),
            write_lock=WriteLock(Path(database)) if on_disk and database else None,
            lock_timeout=busy_timeout,
            one_trip=OneTrip(url, busy_timeout) if on_disk else None,
        )
    engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    return Engines(writer=engine, reader=engine)
