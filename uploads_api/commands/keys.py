"""``uploads-api keys create|list|revoke``: API keys kept (as hashes) in the data dir's database."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from uploads_api.config import Settings
    from uploads_api.db.keys import KeyRepository
    from uploads_api.services.audit import Auditor

# Settings and the database modules are imported inside the commands: every `uploads-api`
# call builds this parser, and a client command should not pay for pydantic-settings,
# SQLAlchemy and Alembic.

T = TypeVar("T")


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print it (only once)")
    create.add_argument("owner", help="who the key belongs to; files are scoped to it")
    create.add_argument("--admin", action="store_true", help="may see every owner's files")
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="list keys (never the keys themselves)")
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key", help="the id or the prefix shown by `keys list`")
    revoke.set_defaults(handler=_revoke)
    for action in (create, listing, revoke):
        action.add_argument("--data-dir", help="data directory (default ./storage)")


def _with_keys(
    args: argparse.Namespace, work: Callable[[KeyRepository, Auditor], Awaitable[T]]
) -> T:
    from uploads_api.config import Settings

    if args.data_dir:
        os.environ["UPLOADS_DATA_DIR"] = args.data_dir
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    from uploads_api.db.audit import AuditRepository
    from uploads_api.db.audit_buffer import AuditBuffer
    from uploads_api.db.engine import create_engines
    from uploads_api.db.keys import KeyRepository
    from uploads_api.db.schema import ensure_schema
    from uploads_api.services.audit import Auditor

    async def run() -> T:
        engines = create_engines(settings.resolved_database_url)
        audit = AuditRepository(engines)
        buffer = AuditBuffer(audit)
        try:
            await ensure_schema(engines)
            return await work(KeyRepository(engines), Auditor(buffer, audit))
        finally:
            await buffer.stop()  # the audit rows are written before the command returns
            await engines.dispose()

    return asyncio.run(run())


def _create(args: argparse.Namespace) -> int:
    if not args.owner.strip() or len(args.owner) > 64:
        print("the owner must be 1 to 64 characters", file=sys.stderr)
        return 2

    from uploads_api.auth import Authenticator

    async def work(keys: KeyRepository, auditor: Auditor) -> str:
        key, record = await Authenticator(keys).create(args.owner.strip(), admin=args.admin)
        # Never the key: its id names it (`keys list`, `keys revoke ID`).
        detail = {"key_id": record.id, "admin": record.admin}
        auditor.record("key.created", None, owner=record.owner, detail=detail)
        return key

    # The key alone on stdout, so `KEY=$(uploads-api keys create me)` captures it.
    print(_with_keys(args, work))
    print("store this key now: only its hash is kept", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    records = _with_keys(args, lambda keys, _auditor: keys.all())
    print(f"{'id':>4}  {'prefix':<12} {'owner':<24} {'admin':<5}  created              revoked")
    for r in records:
        revoked = r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "-"
        created = r.created_at.isoformat(timespec="seconds")
        print(f"{r.id:>4}  {r.prefix:<12} {r.owner:<24} {r.admin!s:<5}  {created}  {revoked}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    async def work(keys: KeyRepository, auditor: Auditor) -> int:
        revoked = await keys.revoke(args.key)
        for record in revoked:
            detail = {"key_id": record.id, "admin": record.admin}
            auditor.record("key.revoked", None, owner=record.owner, detail=detail)
        return len(revoked)

    count = _with_keys(args, work)
    if count == 0:
        print(f"no active key matches {args.key!r}", file=sys.stderr)
        return 1
    print(f"revoked {count} key(s)", file=sys.stderr)
    return 0


def active_key_count(settings: Settings) -> int:
    """For the start-up check in ``serve``."""
    from uploads_api.db.engine import create_engines
    from uploads_api.db.keys import KeyRepository
    from uploads_api.db.schema import ensure_schema

    async def run() -> int:
        engines = create_engines(settings.resolved_database_url)
        try:
            await ensure_schema(engines)
            return await KeyRepository(engines).active_count()
        finally:
            await engines.dispose()

    return asyncio.run(run())
