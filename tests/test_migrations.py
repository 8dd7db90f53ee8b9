"""The Alembic migrations build exactly the schema the code declares, on every database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from uploads_api.db.engine import create_engines
from uploads_api.db.migrate import current_revision, upgrade
from uploads_api.db.tables import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite+aiosqlite:///{tmp_path}/m.db"


def _differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


def test_migrations_match_the_tables_and_are_idempotent(database_url: str) -> None:
    async def main() -> None:
        engines = create_engines(database_url)
        try:
            assert (await current_revision(engines))[0] is None
            await upgrade(engines)
            await upgrade(engines)
            current, head = await current_revision(engines)
            assert current == head is not None
            async with engines.reader.connect() as connection:
                assert await connection.run_sync(_differences) == []
        finally:
            await engines.dispose()

    asyncio.run(main())


def test_processes_starting_together_migrate_once(database_url: str) -> None:
    async def main() -> None:
        engines = [create_engines(database_url) for _ in range(3)]
        try:
            await asyncio.gather(*(upgrade(e) for e in engines))
            current, head = await current_revision(engines[0])
            assert current == head
        finally:
            for e in engines:
                await e.dispose()

    asyncio.run(main())


def test_db_command(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "uploads_api.cli", "db"]
    before = subprocess.run(
        [*cli, "current", "--data-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert before.returncode == 1 and "empty" in before.stdout
    up = subprocess.run(
        [*cli, "upgrade", "--data-dir", str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert "database at revision" in up.stdout
    after = subprocess.run(
        [*cli, "current", "--data-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert after.returncode == 0
