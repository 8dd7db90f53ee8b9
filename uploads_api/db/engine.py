"""Async engines for SQLite (WAL, durable commits) and PostgreSQL, from one URL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


@dataclass(frozen=True)
class Engines:
    """``writer`` runs transactions that write; ``reader`` runs reads that never block writers."""

    writer: AsyncEngine
    reader: AsyncEngine

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def _sqlite_engine(url: str, *, writer: bool, busy_timeout: float) -> AsyncEngine:
    if writer:
        # One writer connection per process: SQLite admits one writer at a time anyway, and
        # waiting for the pool is a fair queue, where SQLite's busy handler sleeps with
        # backoff and left the slowest of 16 concurrent commits waiting for seconds.
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=busy_timeout)
    else:
        engine = create_async_engine(url, pool_size=8, max_overflow=8)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives power loss, not only a killed process.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
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
        return Engines(
            writer=_sqlite_engine(url, writer=True, busy_timeout=busy_timeout),
            reader=_sqlite_engine(url, writer=False, busy_timeout=busy_timeout),
        )
    engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    return Engines(writer=engine, reader=engine)
