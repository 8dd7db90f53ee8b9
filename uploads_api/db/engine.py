"""Async engines for SQLite (WAL, durable commits) and PostgreSQL, from one URL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, select
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from uploads_api.db.write_lock import WriteLock


@dataclass(frozen=True)
class Engines:
    """``writer`` runs transactions that write; ``reader`` runs reads that never block writers."""

    writer: AsyncEngine
    reader: AsyncEngine
    # SQLite: taken by every write transaction of every process on the file.
    write_lock: WriteLock | None = None
    lock_timeout: float = 30.0

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends (rolled back if it raises)."""
        async with self.writer.connect() as connection:
            if self.write_lock is None:
                async with connection.begin():
                    yield connection
                return
            try:
                async with asyncio.timeout(self.lock_timeout):
                    await self.write_lock.acquire()
            except TimeoutError as exc:
                raise PoolTimeout(
                    f"another process held the database for {self.lock_timeout:g} s"
                ) from exc
            try:
                async with connection.begin():
                    yield connection
            finally:
                self.write_lock.release()

    async def ping(self) -> None:
        """Raise if the database cannot answer a query (readiness)."""
        async with self.reader.connect() as connection:
            await connection.execute(select(1))

    async def dispose(self) -> None:
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

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        _switch_to_wal(cursor, busy_timeout)
        # FULL: a commit survives power loss, not only a killed process.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so two processes never deadlock upgrading
        # a read lock; WAL keeps readers going meanwhile.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


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
        )
    engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    return Engines(writer=engine, reader=engine)
