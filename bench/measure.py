"""Measuring helpers: summary statistics, process-tree memory and CPU, a /healthz poller."""

from __future__ import annotations

import http.client
import math
import resource
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psutil

MiB = 1024 * 1024


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with ``pct`` % of values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (server workers, forkserver, image pool)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu(pid: int) -> float:
    """User plus system CPU seconds of the process tree, children reaped included."""
    total = 0.0
    for proc in tree(pid):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (curl, vipsthumbnail)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Memory:
    """Peaks of one sampling window, in MiB."""

    main_rss: float = 0.0
    tree_rss: float = 0.0
    tree_pss: float = 0.0
    processes: int = 0


class MemorySampler:
    """Samples a process tree in a thread: every ``interval`` seconds the RSS of the main
    process and the RSS summed over the tree (shared pages counted once per process, so
    an upper bound); every ``pss_every`` samples the PSS summed over the tree (shared pages
    split between their users). Sampling must not steal the CPU it measures: the tree is
    listed again only every second, and PSS (a walk of every mapping) is read rarely."""

    def __init__(self, pid: int, interval: float = 0.02, pss_every: int = 25) -> None:
        self.pid = pid
        self.interval = interval
        self.pss_every = pss_every
        self.peak = Memory()
        self.first = Memory()
        # Each process's own peak RSS in MiB, by pid: a worker's, apart from its siblings'.
        self.process_peaks: dict[int, float] = {}
        self._procs: list[psutil.Process] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, pss: bool) -> Memory:
        seen = Memory()
        for proc in self._procs:
            try:
                info = proc.memory_full_info() if pss else proc.memory_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if proc.pid == self.pid:
                seen.main_rss = info.rss / MiB
            peaks = self.process_peaks
            peaks[proc.pid] = max(peaks.get(proc.pid, 0.0), info.rss / MiB)
            seen.tree_rss += info.rss / MiB
            seen.tree_pss += getattr(info, "pss", 0) / MiB
            seen.processes += 1
        return seen

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            if count % int(1 / self.interval) == 0:
                self._procs = tree(self.pid)
            seen = self._sample(pss=count % self.pss_every == 0)
            count += 1
            peak = self.peak
            peak.main_rss = max(peak.main_rss, seen.main_rss)
            peak.tree_rss = max(peak.tree_rss, seen.tree_rss)
            peak.tree_pss = max(peak.tree_pss, seen.tree_pss)
            peak.processes = max(peak.processes, seen.processes)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._procs = tree(self.pid)
        self.first = self._sample(pss=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class HealthPoller:
    """GET /healthz every ``interval`` seconds on one keep-alive connection, in a thread."""

    host: str
    port: int
    interval: float = 0.02
    latencies: list[float] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)  # time.monotonic() of each
    errors: int = 0

    def between(self, start: float, end: float) -> list[float]:
        """The latencies of the polls sent between two ``time.monotonic()`` instants."""
        return [lat for at, lat in zip(self.started_at, self.latencies, strict=True)
                if start <= at < end]  # fmt: skip

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        next_at = time.perf_counter()
        while not self._stop.is_set():
            at = time.monotonic()
            started = time.perf_counter()
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.latencies.append(time.perf_counter() - started)
                    self.started_at.append(at)
                else:
                    self.errors += 1
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.perf_counter()))
        conn.close()

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
