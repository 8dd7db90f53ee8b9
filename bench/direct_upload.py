"""A direct upload to S3 against the same file through the API: what each costs the API
server, in CPU seconds per GiB.

    python -m bench.direct_upload                 # 1 GiB, 3 runs of each mode
    python -m bench.direct_upload --size-mib 12 --runs 1 --part-mib 5   # smoke

One S3 server (moto's, on loopback) and one ``uploads-api serve`` storing there (the
benchmark settings, tasks in process). A file of random bytes is written once; every run
sends it both ways, the mode that goes first alternating run by run, after an untimed
1 MiB warm-up of each:

- direct: ``POST /v1/direct-uploads`` (with the file's sha256), the parts PUT to their
  presigned URLs a few at a time, each read from disk as it is sent, then ``complete``;
- through the API: ``PUT /v1/files/<name>`` with the file streamed as the body.

Per mode: wall seconds and API CPU (user + system over the server's process tree) from
the first request to the 201 of the completion or the upload, and again to the file being
``ready``. For a direct upload the second span includes the ``verify`` task reading the
whole object back from S3 to hash it: background work, reported apart. moto's CPU is the
storage side's, for context. The server's CPU at rest (its polls) is measured apart, and
so is the API CPU of the requests of ten 1 MiB direct uploads (the fixed cost). Goal: a
direct upload costs the API < 0.05 s of CPU per GiB up to its 201. Writes
bench/results/direct_upload.md and prints it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.direct_upload_runs import MODES, Bench, GiB, MiB, Moto, Run, Source, write_source
from bench.measure import median
from bench.report import _cpu_model
from bench.systems import BENCH_ENV
from tests.cluster import AWS_ENV
from tests.conftest import ROOT, Server
from tests.service_fixtures import s3_client

GOAL = 0.05  # API CPU seconds per GiB for a direct upload, up to the 201 of complete
BUCKET = "bench-direct"
PACKAGES = ("moto", "boto3", "botocore", "uvicorn", "httpx")
SMALL_UPLOADS = 10  # 1 MiB direct uploads whose requests give the fixed cost


def spread(values: list[float], digits: int = 3) -> str:
    if not values:
        return "n/a"
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def net(run: Run, rate: float) -> float:
    """API CPU to the 201, less what the server spends at rest over the same wall time."""
    wall, cpu = run.replied
    return cpu - rate * wall


def report(
    runs: list[Run],
    small: list[Run],
    source: Source,
    idles: list[float],
    idle_seconds: float,
    note: str,
) -> str:
    gib = source.size / GiB
    rate = median(idles)
    by = {mode: [r for r in runs if r.mode == mode] for mode in MODES}
    direct, api = by["direct"], by["api"]

    def row(label: str, value: Callable[[Run], float]) -> str:
        ratio = [value(d) / value(a) for d, a in zip(direct, api, strict=True) if value(a)]
        cells = [label, *(spread([value(r) for r in by[m]]) for m in MODES), f"{spread(ratio)}x"]
        return "| " + " | ".join(cells) + " |"

    def verdict(value: float) -> str:
        return "yes" if value < GOAL else "no"

    measured = median([r.replied[1] / gib for r in direct])
    netted = [median([net(r, x) / gib for r in direct]) for x in (rate, max(idles), min(idles))]
    small_complete = statistics.mean(r.phase("complete")[1] for r in small)
    # The complete request's own work does not grow with the file (the storage call only
    # waits), so its cost on a small upload stands for it; start's grows with the parts.
    alone = (median([r.phase("start")[1] for r in direct]) + small_complete) / gib
    lines = [
        f"# Direct upload to S3 against through the API, {time.strftime('%Y-%m-%d')}",
        "",
        note,
        "",
        "| Figure | direct | through the API | direct / API |",
        "|---|---|---|---|",
        row("wall s, to 201", lambda r: r.replied[0]),
        row("API CPU s, to 201", lambda r: r.replied[1]),
        row("**API CPU s per GiB, to 201**", lambda r: r.replied[1] / gib),
        row("API CPU s per GiB, to 201, less at-rest", lambda r: net(r, rate) / gib),
        row("wall s, to ready", lambda r: r.since_start("ready")[0]),
        row("API CPU s, to ready (direct: with verify)", lambda r: r.since_start("ready")[1]),
        row("API CPU s per GiB, to ready", lambda r: r.since_start("ready")[1] / gib),
        row("moto (S3 server) CPU s, to ready", lambda r: r.moto_cpu),
        row("client (this script) CPU s, to ready", lambda r: r.client_cpu),
        "",
        f"At rest the server spends {rate * 1000:.1f} ms of CPU per second (median of"
        f" {len(idles)} windows of {idle_seconds:.0f} s, {min(idles) * 1000:.1f}-"
        f"{max(idles) * 1000:.1f}: its task and webhook polls), counted in every span; the"
        " *less at-rest* row takes that rate times the wall time off.",
        "",
        f"| Goal: a direct upload, API CPU per GiB to the 201 < {GOAL} s | s per GiB | Met |",
        "|---|---|---|",
        f"| as measured, the at-rest polls included | {measured:.3f} | {verdict(measured)} |",
        f"| the requests alone: start at this size + complete of a 1 MiB upload (mean of"
        f" {len(small)}: {small_complete * 1000:.0f} ms) | {alone:.3f} | {verdict(alone)} |",
        f"| less the at-rest rate times the wall time (with the highest and lowest rate)"
        f" | {netted[0]:.3f} ({netted[1]:.3f} to {netted[2]:.3f}) | {verdict(netted[0])} |",
        "",
        "Direct, by phase; *ready* is the verify task reading the object back from S3 and"
        " hashing it (and the `GET /v1/files/{id}?wait=60` that waits for it):",
        "",
        "| Phase | Wall s | API CPU s |",
        "|---|---|---|",
    ]
    for phase in ("start", "parts", "complete", "ready"):
        walls, cpus = zip(*(r.phase(phase) for r in direct), strict=True)
        lines.append(f"| {phase} | {spread(list(walls))} | {spread(list(cpus))} |")
    lines += [
        "",
        "## Every run",
        "",
        "| Run | Mode | Wall to 201 | CPU to 201 | Wall to ready | CPU to ready | moto CPU"
        " | Client CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        values = (*r.replied, *r.since_start("ready"), r.moto_cpu, r.client_cpu)
        cells = [str(r.number), MODES[r.mode], *(f"{v:.3f}" for v in values)]
        lines.append("| " + " | ".join(cells) + " |")
    machine = [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} cores"),
        ("Python", sys.version.split()[0]),
        *((name, importlib.metadata.version(name)) for name in PACKAGES),
        ("Load average at report time", " / ".join(f"{v:.2f}" for v in os.getloadavg())),
    ]
    lines += ["", "## Machine and versions", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine]
    return "\n".join(lines) + "\n"


def method(command: str, source: Source, runs: int, concurrency: int) -> str:
    return (
        f"Command: `{command}`. {source.size // MiB} MiB of random bytes; runs of each mode:"
        f" {runs}, the mode going first alternating, after an untimed 1 MiB warm-up of each;"
        " medians with (min-max); the ratio is taken run by run. API CPU is user + system"
        " seconds over the `uploads-api serve` process tree (psutil, 10 ms ticks); *to 201*"
        " runs from the first request to the 201 of `complete` (direct) or of the `PUT`"
        " (through the API), *to ready* until `GET /v1/files/{id}` says `ready`. Direct:"
        f" parts of the server's part size, {concurrency} at a time. How to read this:"
        ' bench/README.md, "Direct uploads to S3".'
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=4, help="parts in flight")
    parser.add_argument("--part-mib", type=int, help="the server's part size (default its own)")
    parser.add_argument("--idle-seconds", type=float, default=10, help="each at-rest window")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/direct_upload.md")
    args = parser.parse_args(argv)
    command = shlex.join(
        ["python", "-m", "bench.direct_upload", *(sys.argv[1:] if argv is None else argv)]
    )

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-direct-") as tmp:
        root = Path(tmp)
        source = write_source(root / "random.bin", args.size_mib)
        warm = write_source(root / "warm.bin", 1)
        moto = Moto(root / "moto.log")
        server: Server | None = None
        try:
            s3_client(moto.url).create_bucket(Bucket=BUCKET)
            env = {
                **BENCH_ENV,
                **AWS_ENV,
                "UPLOADS_STORAGE_URL": f"s3://{BUCKET}/uploads",
                "UPLOADS_S3_ENDPOINT_URL": moto.url,
            }
            if args.part_mib:
                env["UPLOADS_DIRECT_UPLOAD_PART_SIZE"] = str(args.part_mib * MiB)
            server = Server(root / "data", env, root / "server.log")
            server.start(timeout=60)
            assert server.process is not None
            with httpx.Client(base_url=server.url, timeout=600) as api:
                bench = Bench(api, server.process.pid, moto.process.pid, args.concurrency)
                for mode in MODES:
                    bench.measure(0, mode, warm)
                small = [bench.measure(0, "direct", warm) for _ in range(SMALL_UPLOADS)]
                # A window after each run too: one window counted in 10 ms ticks is coarse.
                idles = [bench.idle(args.idle_seconds)]
                for run in range(1, args.runs + 1):
                    for mode in list(MODES)[:: 1 if run % 2 else -1]:
                        runs.append(done := bench.measure(run, mode, source))
                        wall, cpu = done.replied
                        log(f"run {run} {mode}: {wall:.1f} s to 201, API CPU {cpu:.2f} s")
                    idles.append(bench.idle(args.idle_seconds))
        finally:
            if server is not None:
                server.stop()
            moto.stop()
    note = method(command, source, args.runs, args.concurrency)
    text = report(runs, small, source, idles, args.idle_seconds, note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
