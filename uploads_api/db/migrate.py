"""Schema migrations with Alembic, the same on SQLite and PostgreSQL.

The server upgrades on start (through ``schema.ensure_schema``, which imports this module only
for a database at an older revision); ``uploads-api db upgrade`` does it ahead of a deploy.
"""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from uploads_api.db.engine import Engines
from uploads_api.db.tables import SCHEMA_LOCK


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("uploads_api.db") / "migrations"))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
    command.upgrade(_config(connection), revision)


async def upgrade(engines: Engines, revision: str = "head") -> None:
    # SQLite's writer transactions begin IMMEDIATE, which serialises concurrent starters.
    async with engines.write() as connection:
        await connection.run_sync(_upgrade, revision)


def _current(connection: Connection) -> tuple[str | None, str | None]:
    current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(_config(connection)).get_current_head()
    return current, head


async def current_revision(engines: Engines) -> tuple[str | None, str | None]:
    """The database's revision and the newest one this code knows."""
    async with engines.reader.connect() as connection:
        return await connection.run_sync(_current)
