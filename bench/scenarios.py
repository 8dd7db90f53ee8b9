"""The scenarios S1-S8 (S9-S11, resumable uploads, are in ``tus.py``). Each starts what it
needs, alternates the systems run by run (A B A B ...) and records every run's figure in
``Results``; ``report.py`` turns them into the table. Nothing here asserts a speed: the
table says whether a goal was met."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import systems
from bench.kernel_worker import KernelWorker, thumbnail_once
from bench.load import upload_load
from bench.measure import HealthPoller, MemorySampler, MiB, percentile, tree_cpu
from bench.scenario_tools import (
    check_sha256,
    curl,
    multipart_file_sha256,
    pid_of,
    random_file,
    running,
    sha256_of,
    wait_ready,
)
from tests.conftest import Server
from tests.imagegen import jpeg_photo


@dataclass(frozen=True)
class Config:
    smoke: bool
    runs: int
    big_size: int
    s4_total: int
    s4_concurrency: int
    s5_images: dict[str, tuple[int, int]]
    s5_reps: int
    s6_photos: int
    s6_size: tuple[int, int]
    asgi: bool
    small_size: int = 1 * MiB
    s4_size: int = 10 * 1024
    # S9-S11 (bench/tus.py): the chunk of every PATCH, the file that shows memory is flat
    # beside the big one, and the parallel partial uploads of S10.
    tus_chunk: int = 8 * MiB
    tus_small_size: int = 64 * MiB
    tus_streams: int = 4


FULL = Config(
    smoke=False,
    runs=3,
    big_size=1024 * MiB,
    s4_total=3000,
    s4_concurrency=16,
    s5_images={"12 MP": (4000, 3000), "24 MP": (6000, 4000)},
    s5_reps=5,
    s6_photos=200,
    s6_size=(4000, 3000),
    asgi=True,
)
SMOKE = Config(
    smoke=True,
    runs=1,
    big_size=8 * MiB,
    s4_total=60,
    s4_concurrency=4,
    s5_images={"12 MP": (640, 480), "24 MP": (800, 600)},
    s5_reps=1,
    s6_photos=4,
    s6_size=(640, 480),
    asgi=False,
    tus_chunk=1 * MiB,
    tus_small_size=2 * MiB,
)


@dataclass
class Results:
    """Every run's value per figure, in run order, plus free-form details."""

    values: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.values.setdefault(key, []).append(value)


@dataclass
class Context:
    config: Config
    root: Path
    results: Results
    missing: dict[str, str]
    log: Callable[[str], None] = print

    def has(self, tool: str) -> bool:
        if tool in self.missing:
            self.results.skipped[tool] = self.missing[tool]
            return False
        return True


# --- S1, S2, S3: one large upload -------------------------------------------------------


def large_uploads(ctx: Context) -> None:
    config, results = ctx.config, ctx.results
    work = ctx.root / "large"
    work.mkdir()
    big, small = work / "big.bin", work / "small.bin"
    ctx.log(f"  writing a {config.big_size // MiB} MiB random file")
    big_sha = random_file(big, config.big_size)
    small_sha = random_file(small, config.small_size)
    body = work / "response"

    servers: dict[str, Any] = {}
    try:
        servers["ours"] = systems.ours(work, "ours")
        servers["tutorial"] = systems.tutorial(work)
        if ctx.has("nginx"):
            servers["nginx"] = systems.start_nginx(work / "nginx")
        ours: Server = servers["ours"]

        def ours_post(path: Path, sha: str) -> float:
            seconds = curl(["-F", f"file=@{path}"], f"{ours.url}/v1/files", body)
            record = json.loads(body.read_text())["files"][0]
            check_sha256(record["sha256"], sha, "uploads-api multipart")
            httpx.delete(f"{ours.url}/v1/files/{record['id']}")
            return seconds

        def ours_put(path: Path, sha: str) -> float:
            seconds = curl(["-T", str(path)], f"{ours.url}/v1/files/", body)
            record = json.loads(body.read_text())
            check_sha256(record["sha256"], sha, "uploads-api PUT")
            httpx.delete(f"{ours.url}/v1/files/{record['id']}")
            return seconds

        def nginx_post(path: Path, sha: str) -> float:
            seconds = curl(["-F", f"file=@{path}"], f"{servers['nginx'].url}/upload", body)
            stored = Path(body.read_text().strip())
            check_sha256(multipart_file_sha256(stored), sha, "nginx body file")
            stored.unlink()
            return seconds

        def nginx_put(path: Path, sha: str) -> float:
            seconds = curl(["-T", str(path)], f"{servers['nginx'].url}/dav/big.bin", body)
            stored = servers["nginx"].dav_path("big.bin")
            check_sha256(sha256_of(stored), sha, "nginx PUT")
            stored.unlink()
            return seconds

        def tutorial_post(route: str) -> Callable[[Path, str], float]:
            def post(path: Path, sha: str) -> float:
                seconds = curl(["-F", f"file=@{path}"], f"{servers['tutorial'].url}{route}", body)
                stored = Path(json.loads(body.read_text())["path"])
                check_sha256(sha256_of(stored), sha, f"tutorial {route}")
                stored.unlink()
                return seconds

            return post

        s1: list[tuple[str, Callable[[Path, str], float]]] = [("ours", ours_post)]
        s2: list[tuple[str, Callable[[Path, str], float]]] = [("ours", ours_put)]
        if "nginx" in servers:
            s1.append(("nginx", nginx_post))
            s2.append(("nginx", nginx_put))
        s1 += [
            ("tutorial-read", tutorial_post("/files")),
            ("tutorial-chunked", tutorial_post("/files-chunked")),
        ]
        owner = {"tutorial-read": "tutorial", "tutorial-chunked": "tutorial"}
        size_mib = config.big_size / MiB
        for run in range(config.runs):
            ctx.log(f"  run {run + 1}/{config.runs}")
            for scenario, entries in (("S1", s1), ("S2", s2)):
                for name, send in entries:
                    with MemorySampler(pid_of(servers[owner.get(name, name)])) as memory:
                        seconds = send(big, big_sha)
                    results.add(f"{scenario}.{name}", size_mib / seconds)
                    results.add(f"S3.{scenario}.{name}.big.tree_rss", memory.peak.tree_rss)
                    results.add(f"S3.{scenario}.{name}.big.main_rss", memory.peak.main_rss)
                    results.add(f"S3.{scenario}.{name}.big.tree_pss", memory.peak.tree_pss)
                    results.add(f"S3.{scenario}.{name}.processes", memory.peak.processes)
            for scenario, send in (("S1", ours_post), ("S2", ours_put)):
                with MemorySampler(pid_of(ours)) as memory:
                    send(small, small_sha)
                results.add(f"S3.{scenario}.ours.small.tree_rss", memory.peak.tree_rss)
                results.add(f"S3.{scenario}.ours.small.main_rss", memory.peak.main_rss)
                results.add(f"S3.{scenario}.ours.small.tree_pss", memory.peak.tree_pss)
    finally:
        for server in servers.values():
            server.stop()
        big.unlink(missing_ok=True)


# --- S4 and S8: many small uploads ------------------------------------------------------


def small_uploads(ctx: Context) -> None:
    config = ctx.config
    work = ctx.root / "small"
    starts: list[tuple[str, Callable[[], Any], str]] = [
        ("ours", lambda: systems.ours(work, f"ours-{time.monotonic_ns()}"), "/v1/files"),
        ("tutorial", lambda: systems.tutorial(work, f"tutorial-{time.monotonic_ns()}"), "/files"),
        ("ours-w2", lambda: systems.ours(work, f"w2-{time.monotonic_ns()}", 2), "/v1/files"),
    ]
    if config.asgi:
        for server in ("granian", "hypercorn"):
            if ctx.has(server):
                starts.append((server, _asgi_start(server, work), "/v1/files"))
    for run in range(config.runs):
        ctx.log(f"  run {run + 1}/{config.runs}")
        for name, start, path in list(starts):
            try:
                server = start()
            except RuntimeError as exc:
                if name not in ("granian", "hypercorn"):
                    raise
                # Another ASGI server is a comparison only: note it and go on without it.
                ctx.results.skipped[name] = f"did not serve the app: {str(exc)[-300:]}"
                starts.remove((name, start, path))
                continue
            try:
                _small_run(ctx, name, server, path)
            finally:
                server.stop()


def _asgi_start(server: str, work: Path) -> Callable[[], Any]:
    return lambda: systems.ours_on(server, work, f"{server}-{time.monotonic_ns()}")


def _small_run(ctx: Context, name: str, server: Any, path: str) -> None:
    config, results = ctx.config, ctx.results
    port = server.port
    concurrency = config.s4_concurrency
    # Warm-up, untimed: first-request imports, connection set-up, both workers of two.
    upload_load("127.0.0.1", port, path, size=config.s4_size, total=4 * concurrency,
                concurrency=concurrency)  # fmt: skip
    cpu_before = tree_cpu(pid_of(server))
    load = upload_load(
        "127.0.0.1", port, path, size=config.s4_size, total=config.s4_total,
        concurrency=concurrency,
    )  # fmt: skip
    server_cpu = tree_cpu(pid_of(server)) - cpu_before
    if load.ok != config.s4_total:
        raise RuntimeError(f"S4 {name}: statuses {load.statuses}")
    results.add(f"S4.{name}.rate", load.rate)
    results.add(f"S4.{name}.p50_ms", percentile(load.latencies, 50) * 1000)
    results.add(f"S4.{name}.p99_ms", percentile(load.latencies, 99) * 1000)
    results.add(f"S4.{name}.client_cores", load.client_cpu / load.elapsed)
    results.add(f"S4.{name}.server_cores", server_cpu / load.elapsed)


# --- S5: CPU per image ------------------------------------------------------------------


def thumbnail_cpu(ctx: Context) -> None:
    """Each system is one long-lived process (or, for vipsthumbnail, a command per size);
    within a run they take turns image by image, repetition by repetition, so that they
    share whatever else the machine does at the time."""
    config, results = ctx.config, ctx.results
    work = ctx.root / "cpu"
    images = {
        label: jpeg_photo(work / label.replace(" ", ""), size=size)
        for label, size in config.s5_images.items()
    }
    names = ["ours", "vipsthumbnail", "pyvips", "tutorial"]
    names = [name for name in names if name in ("ours", "tutorial") or ctx.has(name)]
    workers = {name: KernelWorker(name) for name in names if name != "vipsthumbnail"}
    try:
        for image in images.values():  # warm-up, untimed
            for name in names:
                thumbnail_once(name, workers, image, work / f"out-{name}")
        for run in range(config.runs):
            ctx.log(f"  run {run + 1}/{config.runs}")
            for label, image in images.items():
                samples: dict[str, list[float]] = {name: [] for name in names}
                for _ in range(config.s5_reps):
                    for name in names:
                        cpu, size = thumbnail_once(name, workers, image, work / f"out-{name}")
                        samples[name].append(cpu)
                        results.details.setdefault("S5.bytes", {})[f"{label}.{name}"] = size
                for name, cpus in samples.items():
                    results.add(f"S5.{label}.{name}", sorted(cpus)[len(cpus) // 2])
    finally:
        for worker in workers.values():
            worker.close()


# --- S6, S7, S8: a batch of photos ------------------------------------------------------


def photo_batch(ctx: Context) -> None:
    config, results = ctx.config, ctx.results
    work = ctx.root / "photos"
    distinct = [jpeg_photo(work / f"src{i}", size=config.s6_size) for i in range(4)]
    photos = [distinct[i % len(distinct)] for i in range(config.s6_photos)]
    listing = work / "photos.txt"
    listing.write_text("\n".join(str(p) for p in photos))
    results.details["S6.upload_mib"] = sum(p.stat().st_size for p in photos) / MiB
    for run in range(config.runs):
        ctx.log(f"  run {run + 1}/{config.runs}")
        out = work / "kernel-out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        command = [sys.executable, "-m", "bench.kernel", "pool", str(listing), str(out)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"kernel pool failed: {done.stderr[-2000:]}")
        answer = json.loads(done.stdout)
        results.add("S6.kernel", answer["images"] / answer["seconds"])
        shutil.rmtree(out, ignore_errors=True)
        for workers in (1, 2):
            name = "ours" if workers == 1 else "ours-w2"
            label = f"w{workers}-{run}"
            with running(functools.partial(systems.ours, work, label, workers)) as server:
                _photo_run(ctx, name, server, photos)


def _photo_run(ctx: Context, name: str, server: Server, photos: list[Path]) -> None:
    results = ctx.results
    args = ["curl", "-sS", "--parallel", "--parallel-immediate", "--parallel-max", "300"]
    for photo in photos:
        args += ["-F", f"file=@{photo}", "-o", "/dev/null", "-w", "%{http_code}\\n"]
        args += [f"{server.url}/v1/files", "--next"]
    args.pop()
    cpu_before = tree_cpu(pid_of(server))
    with HealthPoller("127.0.0.1", server.port) as health:
        started = time.monotonic()
        sent = subprocess.run(args, capture_output=True, text=True)
        uploaded = time.monotonic()
        codes = sent.stdout.split()
        if sent.returncode != 0 or codes.count("201") != len(photos):
            raise RuntimeError(f"S6 upload: {sorted(set(codes))} {sent.stderr[-500:]}")
        finished = wait_ready(server.url, len(photos), timeout=600)
    elapsed = finished - started
    results.add(f"S6.{name}", len(photos) / elapsed)
    results.add(f"S6.{name}.upload_seconds", uploaded - started)
    results.add(f"S6.{name}.server_cores", (tree_cpu(pid_of(server)) - cpu_before) / elapsed)
    results.add(f"S7.{name}.p50_ms", percentile(health.latencies, 50) * 1000)
    results.add(f"S7.{name}.p99_ms", percentile(health.latencies, 99) * 1000)
    results.add(f"S7.{name}.max_ms", max(health.latencies, default=0.0) * 1000)
    # Where the slow answers fall: while the photos arrive, or while they are processed.
    uploading = health.between(started, uploaded)
    processing = health.between(uploaded, finished)
    results.add(f"S7.{name}.uploading.p99_ms", percentile(uploading, 99) * 1000)
    results.add(f"S7.{name}.processing.p99_ms", percentile(processing, 99) * 1000)
    results.add(f"S7.{name}.polls", len(health.latencies))
    results.add(f"S7.{name}.errors", health.errors)


# --- Appendix: the same app under other ASGI servers ------------------------------------


def asgi_large(ctx: Context) -> None:
    """S1 under uvicorn, granian and hypercorn, alternated."""
    config, results = ctx.config, ctx.results
    work = ctx.root / "asgi"
    work.mkdir()
    big = work / "big.bin"
    big_sha = random_file(big, config.big_size)
    body = work / "response"
    servers: dict[str, Any] = {}
    try:
        servers["uvicorn"] = systems.ours(work, "uvicorn")
        for name in ("granian", "hypercorn"):
            if ctx.has(name):
                try:
                    servers[name] = systems.ours_on(name, work, name)
                except RuntimeError as exc:
                    ctx.results.skipped[name] = f"did not serve the app: {str(exc)[-300:]}"
        for run in range(config.runs):
            ctx.log(f"  run {run + 1}/{config.runs}")
            for name, server in servers.items():
                seconds = curl(["-F", f"file=@{big}"], f"{server.url}/v1/files", body)
                record = json.loads(body.read_text())["files"][0]
                check_sha256(record["sha256"], big_sha, f"{name} multipart")
                httpx.delete(f"{server.url}/v1/files/{record['id']}")
                results.add(f"A.S1.{name}", config.big_size / MiB / seconds)
    finally:
        for server in servers.values():
            server.stop()
        big.unlink(missing_ok=True)
