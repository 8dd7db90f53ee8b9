"""What became of each file of a batch, and the skip decisions both clients share."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from uploads_api.client.errors import ApiError, ProcessingTimeout
from uploads_api.client.models import FAILED, FileRecord

Outcome = Literal["uploaded", "skipped", "failed"]
ALREADY_THERE = "already on the server"


@dataclass(frozen=True)
class UploadResult:
    """One file of a batch.

    ``outcome`` is about the upload: ``uploaded``, ``skipped`` (its bytes were already on
    the server, or earlier in the batch) or ``failed`` (``error`` says why). When the batch
    waited for processing, ``record`` is the processed file, so ``record.status`` may be
    ``failed`` even though the upload succeeded: ``ok`` is False then.
    """

    path: Path
    outcome: Outcome
    size: int
    record: FileRecord | None = None
    error: Exception | None = None
    sha256: str | None = None
    reason: str | None = None
    tries: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        if self.outcome == "failed" or self.error is not None:
            return False
        return self.record is None or self.record.status != FAILED

    @property
    def processing_failed(self) -> bool:
        return self.record is not None and self.record.status == FAILED

    @property
    def problem(self) -> str | None:
        """Why this file is not ``ok``, in one line."""
        if self.outcome == "failed" or isinstance(self.error, ProcessingTimeout):
            return self.reason or str(self.error)
        if self.error is not None:
            return str(self.error)
        if self.record is not None:
            return self.record.failure()
        return None

    def error_json(self) -> dict[str, object] | None:
        """The error as JSON: the problem's fields for an API error, else a kind."""
        if self.error is None:
            failure = self.record.failure() if self.record is not None else None
            return None if failure is None else {"code": "processing-failed", "detail": failure}
        if isinstance(self.error, ApiError):
            return {
                "status": self.error.status,
                "code": self.error.code,
                "title": self.error.title,
                "detail": self.error.detail,
            }
        kind = "".join("-" + c.lower() if c.isupper() else c for c in type(self.error).__name__)
        return {"code": kind.lstrip("-"), "detail": self.problem}


def skipped(path: Path, size: int, sha256: str, reason: str) -> UploadResult:
    return UploadResult(path, "skipped", size, sha256=sha256, reason=reason)


def unreadable(path: Path, size: int, exc: OSError) -> UploadResult:
    return UploadResult(path, "failed", size, error=exc, reason=f"cannot read: {exc}")


def uploaded(
    path: Path, record: FileRecord, started: float, tries: int = 0, sha256: str | None = None
) -> UploadResult:
    """``started``: ``time.monotonic()`` when the upload began. ``sha256``, when known here,
    stands in for the record's until the server has hashed a direct upload."""
    return UploadResult(
        path,
        "uploaded",
        record.size,
        record=record,
        sha256=record.sha256 or sha256,
        tries=tries,
        seconds=time.monotonic() - started,
    )


def upload_failed(
    path: Path, size: int, sha256: str | None, exc: Exception, started: float, tries: int = 0
) -> UploadResult:
    """An upload that was tried and failed; ``started`` as for ``uploaded``."""
    return UploadResult(
        path,
        "failed",
        size,
        error=exc,
        sha256=sha256,
        reason=str(exc),
        tries=tries,
        seconds=time.monotonic() - started,
    )


class Triage:
    """Decides, file by file once its hash is known, whether it still has to be sent:
    not when the server has the bytes, nor when an earlier file of the batch has them."""

    def __init__(self) -> None:
        self._first: dict[str, Path] = {}

    def sort(
        self,
        items: Sequence[tuple[int, Path, int, str]],
        present: Iterable[str],
    ) -> tuple[list[tuple[int, str]], list[tuple[int, UploadResult]]]:
        """``items`` are (index, path, size, sha256); returns what to send, (index,
        sha256), and what is decided already, (index, result)."""
        on_server = set(present)
        send: list[tuple[int, str]] = []
        decided: list[tuple[int, UploadResult]] = []
        for index, path, size, digest in items:
            if digest in on_server:
                decided.append((index, skipped(path, size, digest, ALREADY_THERE)))
            elif digest in self._first:
                reason = f"same bytes as {self._first[digest]}"
                decided.append((index, skipped(path, size, digest, reason)))
            else:
                self._first[digest] = path
                send.append((index, digest))
        return send, decided
