"""What became of the files of an ``uploads-api upload``: the counts, the closing summary
(as JSON and as a sentence), and each file's outcome as a line or a JSON object. Nothing
here prints; the reporters in ``upload_reporters`` do."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uploads_api.client import UploadResult
from uploads_api.commands.files import human_size


@dataclass
class Tally:
    """Counts of the batch so far, kept from its events."""

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
