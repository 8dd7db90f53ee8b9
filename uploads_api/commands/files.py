"""``uploads-api ls``, ``get`` and ``rm``: the server's files from scripts; and the
connection options and error reporting every command that talks to a server shares."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from uploads_api.client import AsyncClient, FileRecord, UploadsClientError
from uploads_api.client.calls import API_KEY_ENV, DEFAULT_URL, URL_ENV
from uploads_api.client.models import FAILED, PROCESSING, READY

FILE_STATUSES = (PROCESSING, READY, FAILED)
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument("--url", help=f"server URL (default ${URL_ENV}, else {DEFAULT_URL})")
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"API key (default ${API_KEY_ENV}; prefer it: arguments show in the process list)",
    )


def connect(args: argparse.Namespace, **options: Any) -> AsyncClient:
    return AsyncClient(args.url, args.api_key, **options)


def at_least(minimum: float, kind: type[int] | type[float] = int) -> Callable[[str], Any]:
    """An argparse ``type`` refusing numbers below ``minimum`` (a usage error, status 2)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is not at least {minimum:g}")
        return value

    return parse


positive_int = at_least(1)

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def byte_size(text: str) -> int:
    """An argparse ``type`` for sizes: bytes, or with K, M or G (KiB, MiB, GiB)."""
    number = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = number[-1:] if number[-1:] in _UNITS else ""
    try:
        value = int(number.removesuffix(unit)) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (like 8M)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive size")
    return value


def error(message: str) -> None:
    print(f"uploads-api: {message}", file=sys.stderr, flush=True)


def run_remote(args: argparse.Namespace, work: Callable[[AsyncClient], Awaitable[int]]) -> int:
    """Run ``work`` with a client and return its exit status; a client or file error
    becomes a message and status 1, Ctrl-C status 130."""

    async def main() -> int:
        async with connect(args) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep Python's final flush
        # of stdout from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (UploadsClientError, OSError) as exc:
        error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def register(commands: Any) -> None:
    ls = commands.add_parser("ls", help="list files on the server, newest first")
    ls.add_argument("--status", choices=FILE_STATUSES, help="only files with this status")
    ls.add_argument("--limit", type=positive_int, default=50, help="at most N files (50)")
    ls.add_argument("--all", action="store_true", help="every file, however many")
    ls.add_argument("--json", action="store_true", help="one JSON record per line")
    add_connection_options(ls)
    ls.set_defaults(handler=ls_command)

    get = commands.add_parser("get", help="download a file's bytes")
    get.add_argument("id", help="file id")
    get.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write here (a folder: under the file's name); '-' or absent: stdout",
    )
    add_connection_options(get)
    get.set_defaults(handler=get_command)

    rm = commands.add_parser("rm", help="delete files")
    rm.add_argument("ids", nargs="+", metavar="ID", help="file ids")
    add_connection_options(rm)
    rm.set_defaults(handler=rm_command)


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def ls_command(args: argparse.Namespace) -> int:
    limit = None if args.all else args.limit

    async def work(client: AsyncClient) -> int:
        records = []
        async for record in client.list(args.status, limit=limit, page_size=1000):
            if args.json:
                print(json.dumps(record.raw), flush=True)
            else:
                records.append(record)
        if not args.json:
            _print_table(records)
        return 0

    return run_remote(args, work)


def _print_table(records: list[FileRecord]) -> None:
    rows = [
        (r.id, r.status, str(r.size), r.created_at.isoformat(timespec="seconds"), r.filename)
        for r in records
    ]
    if not sys.stdout.isatty():
        # For scripts: tab-separated, sizes in bytes, no header.
        for row in rows:
            print("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "status", "size", "created", "name", box=None)
    for record, row in zip(records, rows, strict=True):
        table.add_row(*row[:2], human_size(record.size), *row[3:])
    Console().print(table)


def get_command(args: argparse.Namespace) -> int:
    output = args.output
    if output is None and sys.stdout.isatty():
        error("not writing a file's bytes to a terminal; use -o FILE (or -o - to insist)")
        return EXIT_USAGE

    async def work(client: AsyncClient) -> int:
        if output is None or output == "-":
            await client.download(args.id, sys.stdout.buffer)
            return 0
        target = Path(output)
        if target.is_dir():
            record = await client.get(args.id)
            target = target / _safe_name(record.filename, args.id)
        written = await client.download(args.id, target)
        print(f"{args.id}: {written} bytes to {target}", file=sys.stderr)
        return 0

    return run_remote(args, work)


def _safe_name(name: str, fallback: str) -> str:
    # The server cleans names, but this one becomes a path here: keep only a last segment.
    candidate = Path(name.replace("\\", "/")).name
    return candidate if candidate not in ("", ".", "..") else fallback


def rm_command(args: argparse.Namespace) -> int:
    async def work(client: AsyncClient) -> int:
        failed = 0
        for file_id in args.ids:
            try:
                await client.delete(file_id)
            except UploadsClientError as exc:
                error(f"{file_id}: {exc}")
                failed += 1
            else:
                print(f"deleted {file_id}", flush=True)
        return EXIT_FAILED if failed else 0

    return run_remote(args, work)
