"""Where resumable uploads' URLs are kept between runs, so that the same upload run again
goes on from the server's offset."""

from __future__ import annotations

import json
import os
from pathlib import Path


def default_state_file() -> Path:
    """Where upload URLs are kept between runs: the user's cache directory."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "uploads-api" / "resumable.json"


class ResumeState:
    """Upload URLs by file (its absolute path, size and modification time) and server: a
    changed file starts afresh. Written whole, atomically; the last writer wins."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self, entries: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(temporary, self.path)

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def put(self, key: str, url: str) -> None:
        self._save({**self._load(), key: url})

    def forget(self, key: str) -> None:
        entries = self._load()
        if entries.pop(key, None) is not None:
            self._save(entries)
