"""Names made durable: a file's name lives in its directory, and a new directory's in its
parent, so each is synced before anything found through it counts as stored."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    """``directory`` and any parents missing, each new one synced into its parent: a file
    named there after a crash is only found if the directories on its way are."""
    if directory.is_dir():
        return
    make_dirs(directory.parent)
    try:
        directory.mkdir()
    except FileExistsError:
        return  # made meanwhile by another writer, which syncs its name
    fsync_dir(directory.parent)
