"""Start writing a file's new bytes to disk while more arrive, so that the fsync that
acknowledges them waits for little.

A tus PATCH answers only once its chunk is fsynced, and the client sends nothing more
until then: an fsync that flushed the whole chunk would stall every upload once per chunk.
Linux's ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` queues the range for writing and
returns at once; it promises no durability (the fsync still does), so where it is missing
nothing changes but speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int], None]:
    if not sys.platform.startswith("linux"):
        return lambda fd, offset, length: None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        # A failure only means the fsync does all the work, as without this call.
        call(fd, offset, length, SYNC_FILE_RANGE_WRITE)

    return start


start_writeback = _load()
