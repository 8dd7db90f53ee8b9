"""Do something the moment the server is asked to stop (SIGTERM, SIGINT).

On such a signal uvicorn stops accepting connections, waits up to its graceful timeout for
open responses to finish, and only then runs the app's shutdown. An event stream never
finishes by itself, so every stop would wait out that timeout; ending the streams at the
signal lets the process go as soon as real requests are done. The handler that was there
(uvicorn's) still runs, right after.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_stop_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on the running loop when a stop signal arrives, while inside.

    Only where a Python handler already takes the signal (a server that stops gracefully):
    with the default action the process ends at once and there is nothing to hurry.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    loop = asyncio.get_running_loop()
    chained: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        chained[signum](signum, frame)

    for signum in STOP_SIGNALS:
        current = signal.getsignal(signum)
        if callable(current):
            chained[signum] = current
            signal.signal(signum, handler)
    try:
        yield
    finally:
        for number, previous in chained.items():
            if signal.getsignal(number) is handler:
                signal.signal(number, previous)
