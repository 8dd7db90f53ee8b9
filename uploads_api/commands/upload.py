"""``uploads-api upload``: the flags, choosing the files, and running the batch until it
ends or a signal stops it. How progress is shown lives in ``upload_reporters``; what the
files came to, in ``upload_tally``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from uploads_api.client import AsyncClient, BatchUploader, RetryPolicy
from uploads_api.client.errors import UploadsClientError
from uploads_api.client.resumable import DEFAULT_CHUNK, DEFAULT_THRESHOLD
from uploads_api.client.selection import select
from uploads_api.commands.files import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    add_connection_options,
    at_least,
    byte_size,
    connect,
    error,
    positive_int,
)
from uploads_api.commands.upload_reporters import (
    JsonReporter,
    LineReporter,
    LiveReporter,
    Reporter,
)

EXIT_TERMINATED = 143
EPILOG = """\
exit status: 0 every file was sent (and, with --wait, processed), 1 some failed,
2 bad usage (e.g. a path that does not exist), 130 interrupted (Ctrl-C).
Run the same command with --skip-existing to send only what did not arrive."""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "upload",
        help="upload files and folders",
        description="Upload files to an uploads-api server, several at a time.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files and folders")
    parser.add_argument("-r", "--recursive", action="store_true", help="enter sub-folders")
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only files matching (repeatable); a GLOB with a / is matched against the path "
        "below the folder given, one without against the file name",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out files and folders matching (repeatable)",
    )
    parser.add_argument(
        "-j", "--concurrency", type=positive_int, default=4, metavar="N", help="uploads at once (4)"
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="hash the files first; send only those whose bytes the server does not have",
    )
    parser.add_argument(
        "--wait", action="store_true", help="wait for processing; report files that failed it"
    )
    parser.add_argument(
        "--wait-timeout", type=at_least(0, float), default=600.0, metavar="S", help="per file (600)"
    )
    parser.add_argument(
        "--retries",
        type=at_least(0),
        default=4,
        metavar="N",
        help="tries again after a transient failure, with backoff (4)",
    )
    parser.add_argument(
        "--no-direct",
        dest="direct",
        action="store_false",
        help="send every file through the API, even where the server offers direct uploads "
        "of large files to its S3 storage",
    )
    parser.add_argument(
        "--resumable-threshold",
        type=byte_size,
        default=DEFAULT_THRESHOLD,
        metavar="SIZE",
        help="files this large or larger go up resumably, over tus in chunks (64M); run the "
        "same command again after an interruption and each goes on where it stopped",
    )
    parser.add_argument(
        "--chunk-size", type=byte_size, default=DEFAULT_CHUNK, metavar="SIZE", help="(8M)"
    )
    parser.add_argument(
        "--parallel",
        type=positive_int,
        default=1,
        metavar="N",
        help="send each resumable file as N pieces at once, joined by the server (1)",
    )
    parser.add_argument(
        "--no-resumable",
        dest="resumable",
        action="store_false",
        help="send large files in one request each, not resumably",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per file, then a summary"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the files that would be sent and stop"
    )
    add_connection_options(parser)
    parser.set_defaults(handler=upload_command)


def upload_command(args: argparse.Namespace) -> int:
    try:
        selection = select(
            args.paths, recursive=args.recursive, include=args.include, exclude=args.exclude
        )
    except FileNotFoundError as exc:
        error(f"upload: {exc}")
        return EXIT_USAGE
    if selection.skipped_dirs:
        error(f"left out {len(selection.skipped_dirs)} sub-folder(s); --recursive enters them")
    if selection.not_files:
        error(f"left out {len(selection.not_files)} entries that are not regular files")
    if not selection.files:
        error("no file to upload")
    if args.dry_run:
        for path in selection.files:
            print(path)
        return 0
    reporter: Reporter
    if args.json:
        reporter = JsonReporter()
    elif sys.stdout.isatty():
        reporter = LiveReporter()
    else:
        reporter = LineReporter()
    try:
        return asyncio.run(_upload(args, selection.files, reporter))
    except KeyboardInterrupt:  # before the signal handlers were in place
        return EXIT_INTERRUPTED


async def _upload(args: argparse.Namespace, files: list[Path], reporter: Reporter) -> int:
    policy = RetryPolicy(attempts=args.retries + 1)
    # Uploads and long polls for --wait each hold a connection; keep them all alive.
    async with connect(
        args,
        retry=policy,
        max_connections=2 * args.concurrency + 2,
        direct=args.direct,
        resumable=args.resumable,
        resumable_threshold=args.resumable_threshold,
        chunk_size=args.chunk_size,
        parallel=args.parallel,
    ) as client:
        try:
            await _preflight(client)
        except UploadsClientError as exc:
            reporter.abort(f"cannot use {client.url}: {exc}")
            return EXIT_FAILED
        uploader = BatchUploader(
            client,
            concurrency=args.concurrency,
            skip_existing=args.skip_existing,
            wait=args.wait,
            wait_timeout=args.wait_timeout,
            on_event=reporter.on_event,
            keep_results=False,
        )
        batch = asyncio.create_task(uploader.run(files))
        caught: list[signal.Signals] = []

        def stop(signum: signal.Signals) -> None:
            caught.append(signum)
            batch.cancel()

        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still stops it
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop, signum)
        reporter.start()
        try:
            await batch
        except asyncio.CancelledError:
            if not caught:
                raise
        except UploadsClientError as exc:
            reporter.abort(f"stopped: {exc}")
            reporter.tally.fatal = True
        finally:
            with contextlib.suppress(NotImplementedError):
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
            reporter.stop()
    reporter.finish(interrupted=bool(caught))
    if caught:
        return EXIT_INTERRUPTED if caught[0] == signal.SIGINT else EXIT_TERMINATED
    return EXIT_FAILED if reporter.tally.problems or reporter.tally.fatal else 0


async def _preflight(client: AsyncClient) -> None:
    """One cheap request first: a wrong URL or key is one clear message, not one per file."""
    async with contextlib.aclosing(client.list(limit=1)) as files:
        async for _ in files:
            break
