"""``uploads-api upload``: send many files, with a live progress display on a terminal, or
one line (or one JSON object) per file for scripts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uploads_api.client import AsyncClient, BatchUploader, RetryPolicy, UploadResult
from uploads_api.client.batch import (
    Done,
    Event,
    Hashed,
    Planned,
    Retry,
    Sent,
    Started,
    Stopping,
    Waiting,
)
from uploads_api.client.errors import UploadsClientError
from uploads_api.client.selection import select
from uploads_api.commands.files import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    add_connection_options,
    at_least,
    connect,
    error,
    human_size,
    positive_int,
)

if TYPE_CHECKING:
    from rich.progress import TaskID

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
    async with connect(args, retry=policy, max_connections=2 * args.concurrency + 2) as client:
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


@dataclass
class Tally:
    files: int = 0
    bytes: int = 0
    uploaded: int = 0
    skipped: int = 0
    failed: int = 0
    sent_bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    in_flight: set[Path] = field(default_factory=set)
    problems: list[UploadResult] = field(default_factory=list)
    fatal: bool = False

    def add(self, result: UploadResult) -> None:
        self.in_flight.discard(result.path)
        if result.outcome == "uploaded":
            self.uploaded += 1
            self.sent_bytes += result.size
        elif result.outcome == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
        if not result.ok:
            self.problems.append(result)

    @property
    def done(self) -> int:
        return self.uploaded + self.skipped + self.failed

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def summary(self, interrupted: bool) -> dict[str, Any]:
        seconds = max(self.seconds, 1e-9)
        return {
            "type": "summary",
            "files": self.files,
            "uploaded": self.uploaded,
            "skipped": self.skipped,
            "failed": self.failed,
            "processing_failed": sum(1 for r in self.problems if r.outcome != "failed"),
            "not_sent": self.files - self.done,
            "bytes": self.sent_bytes,
            "seconds": round(self.seconds, 3),
            "bytes_per_second": round(self.sent_bytes / seconds),
            "files_per_second": round(self.uploaded / seconds, 1),
            "interrupted": interrupted,
            "ok": not (self.problems or self.fatal or interrupted or self.done < self.files),
        }

    def sentence(self, interrupted: bool) -> str:
        s = self.summary(interrupted)
        text = (
            f"{s['uploaded']} uploaded, {s['skipped']} skipped, {s['failed']} failed"
            + (f", {s['processing_failed']} failed processing" if s["processing_failed"] else "")
            + f"; {human_size(s['bytes'])} in {s['seconds']:.1f} s"
            + f" ({human_size(s['bytes_per_second'])}/s, {s['files_per_second']} files/s)"
        )
        if interrupted:
            text += (
                f"\ninterrupted: {len(self.in_flight)} upload(s) in flight were cancelled, "
                f"{self.files - self.done - len(self.in_flight)} not started. "
                "Run the same command with --skip-existing to send only the rest."
            )
        elif self.failed:
            text += "\nrun the same command with --skip-existing to try only what is missing"
        return text


def file_json(result: UploadResult) -> dict[str, Any]:
    record = result.record
    return {
        "type": "file",
        "path": str(result.path),
        "outcome": result.outcome,
        "ok": result.ok,
        "id": record.id if record else None,
        "size": result.size,
        "sha256": result.sha256,
        "status": record.status if record else None,
        "reason": result.reason if result.outcome != "uploaded" else result.problem,
        "error": result.error_json(),
        "tries": result.tries,
        "seconds": round(result.seconds, 3),
        "record": record.raw if record else None,
    }


class Reporter:
    """Turns batch events into output. ``tally`` counts what became of the files."""

    def __init__(self) -> None:
        self.tally = Tally()

    def on_event(self, event: Event) -> None:
        if isinstance(event, Planned):
            self.tally.files, self.tally.bytes = event.files, event.bytes
        elif isinstance(event, Started):
            self.tally.in_flight.add(event.path)
        elif isinstance(event, Done):
            self.tally.add(event.result)
            self.file_done(event.result)
        elif isinstance(event, Retry):
            self.note(f"retrying {event.path} in {event.delay:.1f} s after {event.reason}")
        elif isinstance(event, Stopping):
            self.note(f"starting no more uploads: {event.reason}")

    def file_done(self, result: UploadResult) -> None:
        pass

    def note(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def abort(self, message: str) -> None:
        error(message)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def finish(self, interrupted: bool) -> None:
        print(self.tally.sentence(interrupted), file=sys.stderr, flush=True)


def file_line(result: UploadResult) -> str:
    record = result.record
    if result.outcome == "skipped":
        return f"skipped   {result.path}  ({result.reason})"
    if result.outcome == "failed":
        return f"failed    {result.path}  {result.problem}"
    assert record is not None
    if not result.ok:
        return f"failed    {result.path}  -> {record.id}  {result.problem}"
    return f"uploaded  {result.path}  -> {record.id}  ({human_size(result.size)}, {record.status})"


class LineReporter(Reporter):
    """Not a terminal: one line per file on stdout, the rest on stderr."""

    def file_done(self, result: UploadResult) -> None:
        print(file_line(result), flush=True)


class JsonReporter(Reporter):
    """``--json``: one object per file, then the summary, on stdout."""

    def file_done(self, result: UploadResult) -> None:
        print(json.dumps(file_json(result)), flush=True)

    def abort(self, message: str) -> None:
        super().abort(message)
        print(json.dumps({"type": "error", "detail": message}), flush=True)

    def finish(self, interrupted: bool) -> None:
        print(json.dumps(self.tally.summary(interrupted)), flush=True)
        super().finish(interrupted)


class LiveReporter(Reporter):
    """A terminal: overall bytes, files, rate and ETA, and a bar for each file in flight."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
        )
        self.overall = self.progress.add_task("[bold]uploading", total=None, note="")
        self.hashing: TaskID | None = None
        self.rows: dict[Path, TaskID] = {}
        self.sent: dict[Path, int] = {}
        self.total = 0
        self.waiting: set[Path] = set()

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def note(self, message: str) -> None:
        self.progress.console.print(f"[yellow]{message}[/]", highlight=False)

    def abort(self, message: str) -> None:
        self.progress.console.print(f"[red]{message}[/]", highlight=False)

    def on_event(self, event: Event) -> None:
        super().on_event(event)
        progress = self.progress
        if isinstance(event, Planned):
            self.total = event.bytes
            progress.update(self.overall, total=self.total)
        elif isinstance(event, Hashed):
            if self.hashing is None:
                self.hashing = progress.add_task("hashing", total=self.tally.bytes, note="")
            progress.advance(self.hashing, event.size)
        elif isinstance(event, Started):
            name = event.path.name if len(event.path.name) <= 30 else event.path.name[:29] + "…"
            self.rows[event.path] = progress.add_task(f"  {name}", total=event.size, note="")
        elif isinstance(event, Sent):
            self._sent(event.path, event.sent)
            progress.update(self.rows[event.path], completed=event.sent)
        elif isinstance(event, Waiting):
            self.waiting.add(event.path)
            self._drop_row(event.path)
        elif isinstance(event, Done):
            self._done(event.result)
        self._overall_note()

    def _sent(self, path: Path, sent: int) -> None:
        self.progress.advance(self.overall, sent - self.sent.get(path, 0))
        self.sent[path] = sent

    def _drop_row(self, path: Path) -> None:
        row = self.rows.pop(path, None)
        if row is not None:
            self.progress.remove_task(row)

    def _done(self, result: UploadResult) -> None:
        self.waiting.discard(result.path)
        self._drop_row(result.path)
        if result.outcome != "uploaded":
            # Never to be sent: out of the total, and any partial progress with it.
            self._sent(result.path, 0)
            self.total -= result.size
            self.progress.update(self.overall, total=self.total)
        if not result.ok:
            self.progress.console.print(f"[red]{file_line(result)}[/]", highlight=False)

    def _overall_note(self) -> None:
        tally = self.tally
        note = f"{tally.done}/{tally.files} files"
        if tally.failed or tally.problems:
            note += f", [red]{len(tally.problems)} failed[/]"
        if self.waiting:
            note += f", {len(self.waiting)} processing"
        self.progress.update(self.overall, note=note)

    def finish(self, interrupted: bool) -> None:
        from rich.table import Table

        s = self.tally.summary(interrupted)
        table = Table("uploaded", "skipped", "failed", "bytes", "time", "rate", box=None)
        failed = str(s["failed"])
        if s["processing_failed"]:
            failed += f" (+{s['processing_failed']} in processing)"
        table.add_row(
            str(s["uploaded"]),
            str(s["skipped"]),
            failed,
            human_size(s["bytes"]),
            f"{s['seconds']:.1f} s",
            f"{human_size(s['bytes_per_second'])}/s, {s['files_per_second']} files/s",
        )
        self.console.print(table)
        for line in self.tally.sentence(interrupted).splitlines()[1:]:
            self.console.print(line, style="yellow", highlight=False)
