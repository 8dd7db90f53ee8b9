"""``uploads-api db upgrade|current``: the schema, migrated with Alembic."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uploads_api.config import Settings

# Settings are imported inside the commands, as in ``keys``: client commands build this
# parser too.


def register(commands: Any) -> None:
    database = commands.add_parser("db", help="database schema migrations")
    actions = database.add_subparsers(dest="action", required=True)
    up = actions.add_parser("upgrade", help="migrate the schema to a revision (default: newest)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_upgrade)
    now = actions.add_parser("current", help="print the database's and the code's revision")
    now.set_defaults(handler=_current)
    for action in (up, now):
        action.add_argument("--data-dir", help="data directory (default ./storage)")


def _settings(args: argparse.Namespace) -> Settings:
    from uploads_api.config import Settings

    if args.data_dir:
        os.environ["UPLOADS_DATA_DIR"] = args.data_dir
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


def _upgrade(args: argparse.Namespace) -> int:
    from uploads_api.db.engine import create_engines
    from uploads_api.db.migrate import current_revision, upgrade

    engines = create_engines(_settings(args).resolved_database_url)

    async def run() -> tuple[str | None, str | None]:
        try:
            await upgrade(engines, args.revision)
            return await current_revision(engines)
        finally:
            await engines.dispose()

    current, _head = asyncio.run(run())
    print(f"database at revision {current}")
    return 0


def _current(args: argparse.Namespace) -> int:
    from uploads_api.db.engine import create_engines
    from uploads_api.db.migrate import current_revision

    engines = create_engines(_settings(args).resolved_database_url)

    async def run() -> tuple[str | None, str | None]:
        try:
            return await current_revision(engines)
        finally:
            await engines.dispose()

    current, head = asyncio.run(run())
    print(f"database: {current or 'empty'}; newest: {head}")
    return 0 if current == head else 1
