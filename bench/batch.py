"""S12-S14: scripted batches with the CLI. ``uploads-api upload DIR --recursive -j 4 --json``
sends a tree of small files (S12) and one of 1 MiB files (S13) to a fresh server, then the
small tree again with ``--skip-existing`` (S14: every file present). Beside S12 and S13,
the ceiling for the same tree on the same disk: ``cp -r`` into a fresh directory, then
``sync``, timed the same way (from the command's start to its end). S13 is compared with
S1's MiB/s: that of the large group when it ran, else one large ``curl -F`` per run here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import systems
from bench.measure import MiB, children_cpu, tree_cpu
from bench.scenario_tools import curl, pid_of, random_file
from bench.scenarios import Context

UPLOADS_API = str(Path(sys.executable).parent / "uploads-api")
FILES_PER_FOLDER = 100


@dataclass(frozen=True)
class Sizes:
    small_files: int
    small_size: int
    large_files: int
    large_size: int


FULL = Sizes(small_files=10_000, small_size=10 * 1024, large_files=1000, large_size=MiB)
SMOKE = Sizes(small_files=40, small_size=10 * 1024, large_files=4, large_size=MiB)


@dataclass(frozen=True)
class Timed:
    seconds: float
    cpu: float  # of the command (and its children), user + system
    output: str


def make_tree(root: Path, count: int, size: int) -> Path:
    """``count`` distinct random files of ``size`` bytes, ``FILES_PER_FOLDER`` a folder."""
    for i in range(count):
        folder = root / f"d{i // FILES_PER_FOLDER:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.bin").write_bytes(os.urandom(size))
    return root


def timed(command: list[str]) -> Timed:
    """Run ``command`` to its end; wall and CPU seconds, and what it printed."""
    cpu_before = children_cpu()
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited {done.returncode}: {done.stderr[-2000:]}")
    return Timed(seconds, children_cpu() - cpu_before, done.stdout)


def ceiling(tree: Path, scratch: Path) -> float:
    """``cp -r`` of the tree into a fresh directory, then ``sync``: seconds."""
    target = scratch / "copy"
    shutil.rmtree(target, ignore_errors=True)
    seconds = timed(["sh", "-c", f'cp -r "{tree}" "{target}" && sync']).seconds
    shutil.rmtree(target, ignore_errors=True)
    return seconds


def upload(url: str, tree: Path, *extra: str) -> tuple[Timed, dict[str, Any]]:
    """The CLI over the tree; its timing and the summary line of ``--json``."""
    command = [UPLOADS_API, "upload", str(tree), "--recursive", "-j", "4", "--json"]
    run = timed([*command, *extra, "--url", url])
    summary = json.loads(run.output.strip().splitlines()[-1])
    if summary.get("type") != "summary" or not summary["ok"]:
        raise RuntimeError(f"uploads-api upload {' '.join(extra)}: {summary}")
    return run, summary


def batch_uploads(ctx: Context) -> None:
    sizes = SMOKE if ctx.config.smoke else FULL
    results = ctx.results
    work = ctx.root / "batch"
    ctx.log(f"  writing {sizes.small_files} + {sizes.large_files} files")
    small = make_tree(work / "small", sizes.small_files, sizes.small_size)
    large = make_tree(work / "large", sizes.large_files, sizes.large_size)
    large_mib = sizes.large_files * sizes.large_size / MiB
    # S1's figure, unless the large group measured it in this run of the suite.
    reference = None if "S1.ours" in results.values else work / "reference.bin"
    if reference is not None:
        random_file(reference, ctx.config.big_size)
    try:
        for run in range(ctx.config.runs):
            ctx.log(f"  run {run + 1}/{ctx.config.runs}")
            server = systems.ours(work, f"batch-{run}")
            try:
                _run(ctx, server, small, large, large_mib, reference, sizes)
            finally:
                server.stop()
                shutil.rmtree(server.data_dir, ignore_errors=True)
            results.add("S12.ceiling", sizes.small_files / ceiling(small, work))
            results.add("S13.ceiling", large_mib / ceiling(large, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if reference is None:
        results.values["S13.S1"] = list(results.values["S1.ours"])


def _run(
    ctx: Context,
    server: Any,
    small: Path,
    large: Path,
    large_mib: float,
    reference: Path | None,
    sizes: Sizes,
) -> None:
    results = ctx.results
    pid = pid_of(server)
    cpu_before = tree_cpu(pid)
    run, summary = upload(server.url, small)
    if summary["uploaded"] != sizes.small_files:
        raise RuntimeError(f"S12: {summary}")
    results.add("S12.ours", sizes.small_files / run.seconds)
    results.add("S12.server_cpu", tree_cpu(pid) - cpu_before)
    results.add("S12.client_cpu", run.cpu)

    cpu_before = tree_cpu(pid)
    run, summary = upload(server.url, small, "--skip-existing")
    if summary["skipped"] != sizes.small_files:
        raise RuntimeError(f"S14: {summary}")
    results.add("S14.seconds", run.seconds)
    results.add("S14.server_cpu", tree_cpu(pid) - cpu_before)
    results.add("S14.client_cpu", run.cpu)

    cpu_before = tree_cpu(pid)
    run, summary = upload(server.url, large)
    if summary["uploaded"] != sizes.large_files:
        raise RuntimeError(f"S13: {summary}")
    results.add("S13.ours", large_mib / run.seconds)
    results.add("S13.server_cpu", tree_cpu(pid) - cpu_before)
    results.add("S13.client_cpu", run.cpu)

    if reference is not None:
        body = ctx.root / "batch" / "response"
        seconds = curl(["-F", f"file=@{reference}"], f"{server.url}/v1/files", body)
        record = json.loads(body.read_text())["files"][0]
        httpx.delete(f"{server.url}/v1/files/{record['id']}")
        results.add("S13.S1", ctx.config.big_size / MiB / seconds)
