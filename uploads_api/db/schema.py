"""Bringing a database's schema up to date, cheaply in the two common cases.

A database already at the newest revision costs one query. An empty one is created from
the table definitions and stamped with that revision, as Alembic's cookbook recommends
for a new database. Only a database at an older revision runs the migrations: the one case
that imports Alembic, which a serving process would otherwise carry (about 14 MiB) for
its whole life.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    insert,
    inspect,
    select,
    text,
)

from uploads_api.db import tables
from uploads_api.db.engine import Engines

# The newest revision under migrations/versions; a test keeps the two equal.
HEAD_REVISION = "0007"

# Alembic's own bookkeeping table, as Alembic creates it.
_version = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def _revision(connection: Connection) -> str | None:
    """The stored revision; ``""`` for an empty database, ``None`` for one with tables or
    a version table but no revision (left to Alembic to judge)."""
    names = set(inspect(connection).get_table_names())
    if _version.name in names:
        # An empty version table (after a downgrade to base) is Alembic's to judge.
        return connection.execute(select(_version.c.version_num)).scalar()
    return "" if not names & set(tables.metadata.tables) else None


def _create(connection: Connection) -> None:
    tables.metadata.create_all(connection)
    _version.create(connection)
    connection.execute(insert(_version).values(version_num=HEAD_REVISION))


async def ensure_schema(engines: Engines) -> None:
    """Create or upgrade the schema so it is at ``HEAD_REVISION``."""
    async with engines.write() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(select(text(f"pg_advisory_xact_lock({tables.SCHEMA_LOCK})")))
        # SQLite's writer transactions begin IMMEDIATE, which serialises starters there.
        revision = await connection.run_sync(_revision)
        if revision == HEAD_REVISION:
            return
        if revision == "":
            await connection.run_sync(_create)
            return
    from uploads_api.db.migrate import upgrade

    await upgrade(engines)
