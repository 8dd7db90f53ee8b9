"""The Alembic migrations, and the shortcut for a new database, build exactly the schema
the code declares, on every database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from uploads_api.db.engine import create_engines
from uploads_api.db.migrate import current_revision, upgrade
from uploads_api.db.schema import HEAD_REVISION, ensure_schema
from uploads_api.db.tables import metadata


def _differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


def test_migrations_match_the_tables_and_are_idempotent(empty_database_url: str) -> None:
    async def main() -> None:
        engines = create_engines(empty_database_url)
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


def test_processes_starting_together_migrate_once(empty_database_url: str) -> None:
    async def main() -> None:
        engines = [create_engines(empty_database_url) for _ in range(3)]
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


def test_the_head_revision_constant_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(files("uploads_api.db") / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_a_new_database_is_created_at_head_without_migrating(empty_database_url: str) -> None:
    async def main() -> None:
        engines = [create_engines(empty_database_url) for _ in range(3)]
        try:
            # Three processes starting together on an empty database: one creates it.
            await asyncio.gather(*(ensure_schema(e) for e in engines))
            await ensure_schema(engines[0])
            current, head = await current_revision(engines[0])
            assert current == head == HEAD_REVISION
            async with engines[0].reader.connect() as connection:
                assert await connection.run_sync(_differences) == []
            # Alembic itself agrees there is nothing to do.
            await upgrade(engines[0])
            assert (await current_revision(engines[0]))[0] == HEAD_REVISION
        finally:
            for e in engines:
                await e.dispose()

    asyncio.run(main())


def test_a_migrated_database_is_left_as_it_is(empty_database_url: str) -> None:
    async def main() -> None:
        engines = create_engines(empty_database_url)
        try:
            await upgrade(engines)
            await ensure_schema(engines)
            assert (await current_revision(engines))[0] == HEAD_REVISION
            async with engines.reader.connect() as connection:
                assert await connection.run_sync(_differences) == []
        finally:
            await engines.dispose()

    asyncio.run(main())


def test_starting_on_a_new_or_current_database_never_imports_alembic(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from uploads_api.db.engine import create_engines\n"
        "from uploads_api.db.schema import ensure_schema\n"
        "async def main():\n"
        f"    engines = create_engines('sqlite+aiosqlite:///{tmp_path}/n.db')\n"
        "    await ensure_schema(engines)\n"
        "    await ensure_schema(engines)\n"
        "    await engines.dispose()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
