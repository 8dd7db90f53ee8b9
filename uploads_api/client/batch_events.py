"""What ``BatchUploader`` reports as it goes: small frozen events, one callback, in the
order things happen. The command line draws its progress display from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uploads_api.client.results import UploadResult


@dataclass(frozen=True)
class Planned:
    files: int
    bytes: int


@dataclass(frozen=True)
class Hashed:
    path: Path
    size: int


@dataclass(frozen=True)
class Started:
    path: Path
    size: int


@dataclass(frozen=True)
class Sent:
    """``sent`` bytes of ``path`` went out in the current try (0 when a try starts)."""

    path: Path
    sent: int


@dataclass(frozen=True)
class Retry:
    """Try ``tries`` of ``path`` failed; the next starts in ``delay`` s. A request carrying
    ``carried`` files has one event for each, ``position`` 0 to ``carried - 1``."""

    path: Path
    tries: int
    delay: float
    reason: str
    carried: int = 1
    position: int = 0


@dataclass(frozen=True)
class Waiting:
    """Uploaded; now waiting for processing to end."""

    path: Path
    file_id: str


@dataclass(frozen=True)
class Done:
    result: UploadResult


@dataclass(frozen=True)
class Stopping:
    """No more files will be started: the server cannot be reached."""

    reason: str


Event = Planned | Hashed | Started | Sent | Retry | Waiting | Done | Stopping
