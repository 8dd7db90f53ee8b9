"""Setting up a pool worker process: the pixel limit, the HEIF and AVIF decoders, a lower
CPU priority and a cap on its memory. ``configure_worker`` is the pool's initializer;
``limited`` runs one task under a CPU-time budget."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import resource
import signal
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from PIL import Image, ImageFile, features

T = TypeVar("T")

# Pool workers run at this niceness (0 is normal, 19 the lowest priority).
WORKER_NICENESS = 10


def configure_worker(max_pixels: int, memory_limit: int | None = None) -> None:
    """Pool initializer: set the pixel limit and register the HEIF and AVIF decoders.
    In a pool worker process, also lower its CPU priority and cap its address space at
    ``memory_limit`` bytes, so a decoder that allocates without end fails (MemoryError,
    or the process dies and is replaced) instead of taking the machine's memory.

    Safe to call more than once.
    """
    # Imported here, not at the top: the server process imports this module but never
    # decodes, and the HEIF plugin, pypdfium2, PyAV and mutagen (imported likewise, in their
    # modules) would add
    # some 20 MiB to it.
    import pillow_heif

    Image.MAX_IMAGE_PIXELS = max_pixels
    # A truncated file must fail rather than give a half-grey thumbnail.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    pillow_heif.register_heif_opener()
    if features.check_module("avif"):
        importlib.import_module("PIL.AvifImagePlugin")  # registers itself on import
    else:
        register_avif = getattr(pillow_heif, "register_avif_opener", None)
        if register_avif is not None:
            register_avif()
    if multiprocessing.parent_process() is not None:
        _lower_priority()
        # A worker ended by a limit must not leave a core file of its memory behind.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_limit is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard == resource.RLIM_INFINITY or hard > memory_limit:
                resource.setrlimit(resource.RLIMIT_AS, (memory_limit, hard))


class CpuBudgetExceeded(Exception):
    """A call used more CPU time than its budget (several decoder threads use it faster
    than the wall clock runs)."""


def _over_budget(_signum: int, _frame: object) -> None:
    raise CpuBudgetExceeded("the call used up its CPU-time budget")


def limited(cpu_seconds: float, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` with at most ``cpu_seconds`` more CPU time for this process. Past it
    the kernel sends SIGXCPU, and the call ends with ``CpuBudgetExceeded`` as soon as
    Python runs again (a decoder stuck in C is ended by the pool's wall clock). A worker
    lives for many tasks, so the limit is set from what it has used so far, and the
    previous one is put back after."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    before = resource.getrlimit(resource.RLIMIT_CPU)
    hard = before[1]
    soft = int(spent + cpu_seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    previous = signal.signal(signal.SIGXCPU, _over_budget)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    try:
        return fn(*args)
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, before)
        signal.signal(signal.SIGXCPU, previous)


def _lower_priority() -> None:
    """Decoding is batch work: when the cores are busy, the server's event loop should run
    first, or every request waits behind a decode (S7 in bench/README.md)."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current < WORKER_NICENESS:
            os.setpriority(os.PRIO_PROCESS, 0, WORKER_NICENESS)
    except OSError:
        pass  # not allowed here: run at the same priority
