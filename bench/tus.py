"""S9-S11: resumable uploads (tus) against a single-request PUT and two other tus servers.

    python -m bench.tus [--runs 3] [--size-mib 1024]   # bench/results/tus.md, about 4 minutes
    make bench BENCH_ARGS="--only tus"                 # the same rows in bench/results/latest.md

One client (``tus_client.py``, a process of its own) drives every system with the same
requests; the systems take turns run by run, in this order:

- ``ours``: uploads-api's ``/v1/tus/``, a ``POST`` then ``PATCH``es of 8 MiB (S9);
- ``put``: uploads-api's ``PUT /v1/files/<name>``, the file in one request (S9's baseline);
- ``tuspyserver``: the FastAPI tus router from PyPI under uvicorn (S9's baseline);
- ``tus-node``: ``@tus/server`` with ``@tus/file-store`` under Node (S9's baseline);
- ``ours-w2``: uploads-api with ``--workers 2``, four partial uploads at once, then the
  final concatenation (S10).

Every system gets a fresh server each run (start-up untimed): an untimed 1 MiB warm-up,
then the small file (64 MiB) and the big one (1 GiB), the server's RSS sampled every 20 ms
and its CPU read around each (S11). After each upload, untimed, the stored bytes are
checked (uploads-api: the sha256 of ``GET /v1/files/{id}``; the others: the stored file's),
then removed, and the page cache's dirty pages written out (``os.sync``) so that no system
pays for another's writeback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import report, systems, tus_report
from bench.measure import MemorySampler, MiB, tree_cpu
from bench.scenario_tools import random_file, sha256_of
from bench.scenarios import FULL, Config, Context, Results
from tests.conftest import ROOT

GiB = 1024 * MiB
WARM_SIZE = 1 * MiB


@dataclass(frozen=True)
class System:
    name: str  # the key of its figures
    scenario: str  # S9 or S10
    mode: str  # the client's: tus, put, parallel
    endpoint: str  # where uploads are created (the PUT: its path)
    label: str
    needs: str | None = None  # a baseline that may be missing (systems.missing)


SYSTEMS = (
    System("ours", "S9", "tus", "/v1/tus/", "uploads-api tus"),
    System("put", "S9", "put", "/v1/files/big.bin", "uploads-api raw `PUT`, one request"),
    System("tuspyserver", "S9", "tus", "/files", "tuspyserver (uvicorn)", "tuspyserver"),
    System("tus-node", "S9", "tus", "/v1/tus", "@tus/server + file store (Node)", "tus-node"),
    System(
        "ours-w2",
        "S10",
        "parallel",
        "/v1/tus/",
        "uploads-api tus, 4 partial + final, `--workers 2`",
    ),
)


@dataclass(frozen=True)
class Source:
    path: Path
    size: int
    sha256: str


@dataclass
class Target:
    """A started server, and how to find what it stored."""

    server: Any  # tests.conftest.Server, systems.Process or tus_node.TusNode
    stored: Callable[[str], Path] | None = None  # None: uploads-api, asked over HTTP

    @property
    def pid(self) -> int:
        pid: int = self.server.process.pid
        return pid

    def verify(self, answer: dict[str, Any], source: Source, what: str) -> None:
        """The stored bytes are the source's; then they are removed."""
        if self.stored is None:
            with httpx.Client(base_url=self.server.url, timeout=60) as http:
                record = http.get(f"/v1/files/{answer['file_id']}").raise_for_status().json()
                _same(record["sha256"], source.sha256, what)
                if record["size"] != source.size:
                    raise RuntimeError(f"{what}: {record['size']} bytes, not {source.size}")
                http.delete(f"/v1/files/{answer['file_id']}").raise_for_status()
            return
        path = self.stored(answer["upload"])
        _same(sha256_of(path), source.sha256, what)
        for leftover in path.parent.glob(path.name + "*"):  # the bytes and their sidecar
            leftover.unlink()


def _same(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise RuntimeError(f"{what}: sha256 {actual} is not {expected}")


def _start_ours(workers: int) -> Callable[[Path], Target]:
    def start(root: Path) -> Target:
        return Target(systems.ours(root, f"ours-w{workers}", workers))

    return start


def _start_put(root: Path) -> Target:
    return Target(systems.ours(root, "put"))


def _start_tuspyserver(root: Path) -> Target:
    process = systems.tuspyserver(root)
    files = root / "tuspyserver-files"
    return Target(process, lambda path: files / path.rsplit("/", 1)[-1])


def _start_tus_node(root: Path) -> Target:
    node = systems.start_tus_node(root / "tus-node")
    return Target(node, node.stored)


STARTS: dict[str, Callable[[Path], Target]] = {
    "ours": _start_ours(1),
    "put": _start_put,
    "tuspyserver": _start_tuspyserver,
    "tus-node": _start_tus_node,
    "ours-w2": _start_ours(2),
}


def _server_of(config: Config, system: System) -> str:
    """Which server a system uses. In smoke mode one uploads-api server (two workers) takes
    all three uploads-api systems: start-up is most of a smoke run's time."""
    if config.smoke and system.name in ("ours", "put"):
        return "ours-w2"
    return system.name


@dataclass(frozen=True)
class Measured:
    answer: dict[str, Any]  # the client's: seconds, file_id, upload, client_cpu...
    server_cpu: float
    memory: MemorySampler
    rest_rss: float  # the largest process's RSS when the upload began, MiB


def transfer(target: Target, system: System, source: Source, config: Config) -> Measured:
    """One upload by the client process, the server's CPU and memory read around it."""
    spec = {
        "mode": system.mode,
        "port": target.server.port,
        "endpoint": system.endpoint,
        "file": str(source.path),
        "size": source.size,
        "chunk": config.tus_chunk,
        "streams": config.tus_streams,
    }
    command = [sys.executable, "-m", "bench.tus_client", json.dumps(spec)]
    client = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        if client.stdout.readline().strip() != '{"ready": true}':
            raise RuntimeError(f"tus client did not start: {client.communicate()[1][-2000:]}")
        with MemorySampler(target.pid) as memory:
            # The first sample, taken on entering: each process's RSS before the upload.
            rest = max(memory.process_peaks.values(), default=0.0)
            before = tree_cpu(target.pid)
            client.stdin.write("go\n")
            client.stdin.flush()
            line = client.stdout.readline()
            server_cpu = tree_cpu(target.pid) - before
        _, errors = client.communicate(timeout=60)
        if client.returncode != 0 or not line:
            raise RuntimeError(f"{system.name}: {errors.strip()[-2000:]}")
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    return Measured(json.loads(line), server_cpu, memory, rest)


def _record(results: Results, system: System, size: str, done: Measured, nbytes: int) -> None:
    """S11's figures for every upload; S9's or S10's for the big one."""
    peaks = done.memory.process_peaks.values()
    results.add(f"S11.{system.name}.{size}.process_rss", max(peaks, default=0.0))
    results.add(f"S11.{system.name}.{size}.tree_rss", done.memory.peak.tree_rss)
    if size != "big":
        return
    results.add(f"S11.{system.name}.big.rest_rss", done.rest_rss)
    answer, key = done.answer, f"{system.scenario}.{system.name}"
    results.add(key, nbytes / MiB / answer["seconds"])
    results.add(f"{key}.seconds", answer["seconds"])
    results.add(f"{key}.cpu_per_gib", done.server_cpu / (nbytes / GiB))
    results.add(f"{key}.client_cpu", answer["client_cpu"])
    for phase in ("parts_seconds", "final_seconds"):
        if phase in answer:
            results.add(f"{key}.{phase}", answer[phase])


@contextmanager
def _servers() -> Iterator[dict[str, Target]]:
    live: dict[str, Target] = {}
    try:
        yield live
    finally:
        for target in live.values():
            target.server.stop()


def tus_uploads(ctx: Context) -> None:
    """The ``tus`` group of ``bench.run``: S9, S10 and S11, every system alternated."""
    config, results = ctx.config, ctx.results
    work = ctx.root / "tus"
    work.mkdir()
    ctx.log(f"  writing {config.big_size // MiB} MiB and {config.tus_small_size // MiB} MiB files")
    sources = {
        name: Source(work / f"{name}.bin", size, random_file(work / f"{name}.bin", size))
        for name, size in (
            ("warm", WARM_SIZE),
            ("small", config.tus_small_size),
            ("big", config.big_size),
        )
    }
    chosen = [s for s in SYSTEMS if s.needs is None or ctx.has(s.needs)]
    results.details["tus.chunk_mib"] = config.tus_chunk / MiB
    try:
        for run in range(config.runs):
            ctx.log(f"  run {run + 1}/{config.runs}")
            _one_run(ctx, chosen, sources, work / f"run{run}")
    finally:
        for source in sources.values():
            source.path.unlink(missing_ok=True)


def _one_run(ctx: Context, chosen: list[System], sources: dict[str, Source], root: Path) -> None:
    config = ctx.config
    with _servers() as live:
        for index, system in enumerate(chosen):
            key = _server_of(config, system)
            if key not in live:
                live[key] = STARTS[key](root)
            target = live[key]
            # The warm-up takes the first requests' imports out of the figures; a smoke run's
            # figures mean nothing, so it goes without.
            for size in ("small", "big") if config.smoke else ("warm", "small", "big"):
                source = sources[size]
                done = transfer(target, system, source, config)
                target.verify(done.answer, source, f"{system.name} {size}")
                _sync()
                if size != "warm":
                    _record(ctx.results, system, size, done, source.size)
            ctx.log(
                f"    {system.name}: {done.answer['seconds']:.2f} s,"
                f" server CPU {done.server_cpu:.2f} s"
            )
            if all(_server_of(config, later) != key for later in chosen[index + 1 :]):
                live.pop(key).server.stop()  # its last system this run
    shutil.rmtree(root, ignore_errors=True)


def _sync() -> None:
    # The baselines never fsync: what they left dirty is written out now, untimed, rather
    # than during the next system's turn.
    os.sync()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=FULL.runs)
    parser.add_argument("--size-mib", type=int, default=FULL.big_size // MiB)
    parser.add_argument("--small-mib", type=int, default=FULL.tus_small_size // MiB)
    parser.add_argument("--chunk-mib", type=int, default=FULL.tus_chunk // MiB)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tus.md")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "bench.tus", *(sys.argv[1:] if argv is None else argv)])
    config = dataclasses.replace(
        FULL,
        runs=args.runs,
        big_size=args.size_mib * MiB,
        tus_small_size=args.small_mib * MiB,
        tus_chunk=args.chunk_mib * MiB,
    )
    wanted = {s.needs for s in SYSTEMS if s.needs}
    missing = {k: v for k, v in systems.missing().items() if k in wanted}
    for reason in missing.values():
        print(f"bench: {reason}; that baseline will read n/a", file=sys.stderr)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    root = Path(tempfile.mkdtemp(prefix="uploads-bench-tus-"))
    results = Results()
    started = time.monotonic()
    try:
        tus_uploads(Context(config, root, results, missing, log=log))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report.derive(results)
    labels = [(s.name, s.scenario, s.label) for s in SYSTEMS]
    text = tus_report.render(config, results, labels, command, time.monotonic() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
