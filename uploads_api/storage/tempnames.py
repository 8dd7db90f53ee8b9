"""Temp file names that say which process writes them, so a sweep can tell a file whose
writer was killed (remove it now) from one still being written (leave it alone)."""

from __future__ import annotations

import os
import re
import secrets
import socket

_SAFE = re.compile(r"[^A-Za-z0-9-]")


def _host() -> str:
    return _SAFE.sub("-", socket.gethostname())[:40] or "host"


def temp_name(suffix: str = ".part") -> str:
    return f"{_host()}~{os.getpid()}~{secrets.token_hex(8)}{suffix}"


def writer_is_gone(name: str) -> bool:
    """True when ``name`` was made by a process on this host that no longer runs."""
    parts = name.split("~")
    if len(parts) != 3 or parts[0] != _host() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by someone else
    return False
