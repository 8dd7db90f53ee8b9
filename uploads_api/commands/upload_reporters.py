"""How ``uploads-api upload`` shows its progress: reporters turn the batch's events into
output, one line or one JSON object per file for scripts, or a live display on a terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from uploads_api.client import UploadResult
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
from uploads_api.commands.files import error, human_size
from uploads_api.commands.upload_tally import Tally, file_json, file_line

if TYPE_CHECKING:
    from rich.progress import TaskID


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
        elif isinstance(event, Retry) and event.position == 0:
            # One line for a request, however many files it carries.
            more = f" and {event.carried - 1} more" if event.carried > 1 else ""
            self.note(f"retrying {event.path}{more} in {event.delay:.1f} s after {event.reason}")
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
        # rich is imported only when a terminal is there to draw on.
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
        self.sizes: dict[Path, int] = {}
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
            self.sizes[event.path] = event.size
        elif isinstance(event, Sent):
            self._sent(event.path, event.sent)
            self._row(event.path, event.sent)
        elif isinstance(event, Waiting):
            self.waiting.add(event.path)
            self._drop_row(event.path)
        elif isinstance(event, Done):
            self._done(event.result)
        self._overall_note()

    def _row(self, path: Path, sent: int) -> None:
        """A bar for each file while its bytes go out: in a batch, files go one after the
        other, and those sent wait for the request's answer without a bar."""
        size = self.sizes.get(path, 0)
        row = self.rows.get(path)
        if sent >= size and sent > 0:
            self._drop_row(path)
        elif row is None:
            name = path.name if len(path.name) <= 30 else path.name[:29] + "…"
            self.rows[path] = self.progress.add_task(
                f"  {name}", total=size, completed=sent, note=""
            )
        else:
            self.progress.update(row, completed=sent)

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
        self.sizes.pop(result.path, None)
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
