"""Image variants: how long a request for one takes with a 1024 px source, the first time
(made in the media pool) and later (served as stored), p50 and p99; and the CPU one costs,
our pool-side function against ``vipsthumbnail`` making the same resize.

    python -m bench.variants                           # 20 requests per row, 5 CPU reps
    python -m bench.variants --requests 200 --reps 10

Latency: one server (the benchmark settings), one keep-alive client, one request at a
time, the whole body read. A *first* request asks for a variant not made yet (a new width
each time); a *later* one repeats a stored one; a *revalidated* one sends its ETag back.
The source is a 1024x768 photo, so its 1024 px thumbnail (WebP, the same size) is what
the server makes variants from.

CPU: measured as ``bench.media`` measures previews. Ours is ``images.make_variant`` in a
child process of its own (``python -m bench.variants serve``, set up by the pool's
``configure_worker``), timed with ``time.process_time``; vipsthumbnail's is the
``os.wait4`` usage of each run, start-up included (what shelling out costs). Both write
the same format at the same quality and encoder effort (WebP method 1, AVIF speed 8).
One untimed warm-up each, then the two take turns; the ratio is taken rep by rep.
Goal: ours <= 1.0x vipsthumbnail. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

from bench.measure import median, percentile
from bench.media_commands import run_commands
from bench.report import ratios, spread
from bench.systems import BENCH_ENV
from tests import imagegen
from tests.conftest import Server
from uploads_api.config import DEFAULT_IMAGE_FORMATS

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.0
SOURCE_SIZE = (1024, 768)


# --- ours, in a process of its own ------------------------------------------------------


def serve() -> None:
    """Answer ``spec<TAB>src<TAB>out_dir`` lines with the CPU seconds each variant took."""
    from uploads_api.media.images import make_variant
    from uploads_api.media.variant_spec import parse
    from uploads_api.media.worker import configure_worker

    configure_worker(100_000_000)  # the pool's initializer: pixel limit, AVIF and HEIF
    for line in sys.stdin:
        spec, src, out_dir = line.rstrip("\n").split("\t")
        started = time.process_time()
        make_variant(src, out_dir, parse(spec), None, DEFAULT_IMAGE_FORMATS)
        print(json.dumps({"cpu": time.process_time() - started}), flush=True)


class Ours:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.variants", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def run(self, spec: str, src: Path, out: Path) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{spec}\t{src}\t{out}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"bench.variants serve exited with {self.process.wait()}")
        return float(json.loads(line)["cpu"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(60)


# --- the CPU cases ----------------------------------------------------------------------


@dataclass
class Case:
    """One row: a spec, and the vipsthumbnail arguments for the same variant."""

    spec: str
    source: str  # "original" or "thumbnail"
    vips_size: str
    vips_output: str  # the format and its options, as vipsthumbnail takes them
    vips_crop: bool = False
    ours: list[float] = field(default_factory=list)
    vips: list[float] = field(default_factory=list)
    wrote: dict[str, str] = field(default_factory=dict)

    def vips_command(self, src: Path, out: Path) -> list[str]:
        command = ["vipsthumbnail", str(src), "--size", self.vips_size]
        if self.vips_crop:
            command += ["--smartcrop", "centre"]
        return [*command, "-o", f"{out}/variant.{self.vips_output}"]


CASES = [
    Case("w=512", "original", "512x", "webp[Q=80,effort=1,strip]"),
    Case("w=512", "thumbnail", "512x", "webp[Q=80,effort=1,strip]"),
    Case("w=400,h=400,fit=cover", "thumbnail", "400x400", "webp[Q=80,effort=1,strip]", True),
    Case("w=400,h=400,fit=cover,fmt=jpeg", "original", "400x400", "jpg[Q=80,strip]", True),
    Case(
        "w=400,h=400,fit=cover,fmt=avif,q=60",
        "thumbnail",
        "400x400",
        "avif[Q=60,effort=1,strip]",
        True,
    ),
]


def wrote(out: Path) -> str:
    (path,) = [p for p in out.iterdir() if p.name.startswith("variant.")]
    with Image.open(path) as img:
        return f"{img.width}x{img.height} {path.stat().st_size / 1024:.1f} KiB"


def _ours(ours: Ours, spec: str, src: Path, out: Path) -> float:
    return ours.run(spec, src, out)


def _vips(case: Case, src: Path, out: Path) -> float:
    return run_commands([case.vips_command(src, out)])


def measure_cpu(
    cases: list[Case],
    sources: dict[str, Path],
    reps: int,
    scratch: Path,
    log: Callable[[str], None],
) -> None:
    ours = Ours()
    try:
        for case in cases:
            src = sources[case.source]
            systems: dict[str, Callable[[Path], float]] = {
                "ours": functools.partial(_ours, ours, case.spec, src),
                "vips": functools.partial(_vips, case, src),
            }

            def once(name: str, system: Callable[[Path], float], case: Case = case) -> float:
                out = scratch / name
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                cpu = system(out)
                case.wrote[name] = wrote(out)
                return cpu

            for name, system in systems.items():  # warm-up, untimed
                once(name, system)
            for rep in range(reps):
                log(f"  {case.spec} from the {case.source}: rep {rep + 1}/{reps}")
                order = list(systems.items())[:: 1 if rep % 2 == 0 else -1]
                for name, system in order:
                    cpu = once(name, system)
                    (case.ours if name == "ours" else case.vips).append(cpu)
    finally:
        ours.close()


# --- latency through a server -----------------------------------------------------------


@dataclass
class Latency:
    what: str
    seconds: list[float] = field(default_factory=list)


def measure_latency(root: Path, photo: Path, requests: int) -> list[Latency]:
    server = Server(root / "data", dict(BENCH_ENV), root / "server.log")
    server.start(timeout=60)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answer = client.post("/v1/files", files={"file": (photo.name, photo.read_bytes())})
            file_id = answer.json()["files"][0]["id"]
            record = client.get(f"/v1/files/{file_id}", params={"wait": 60}).json()
            assert record["status"] == "ready", record

            def get(spec: str, **headers: str) -> tuple[float, httpx.Response]:
                started = time.perf_counter()
                response = client.get(f"/v1/files/{file_id}/variants/{spec}", headers=headers)
                elapsed = time.perf_counter() - started
                assert response.status_code in (200, 304), response.text
                return elapsed, response

            get("w=999")  # warm-up: the pool's workers, the first variant's imports
            first, later, revalidated = (
                Latency("first (made: decode, resize, encode, store)"),
                Latency("later (stored)"),
                Latency("revalidated (`If-None-Match`: 304)"),
            )
            for n in range(requests):
                first.seconds.append(get(f"w={300 + n}")[0])
            etag = get("w=300")[1].headers["etag"]
            for _ in range(requests):
                later.seconds.append(get("w=300")[0])
                revalidated.seconds.append(get("w=300", **{"If-None-Match": etag})[0])
    finally:
        server.stop()
    return [first, later, revalidated]


# --- the report -------------------------------------------------------------------------


def report(latencies: list[Latency], cases: list[Case], command: str) -> str:
    lines = [
        f"`{command}`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, load average"
        f" {' / '.join(f'{v:.2f}' for v in os.getloadavg())}",
        "",
        f"Latency of `GET /v1/files/{{id}}/variants/{{spec}}`, {SOURCE_SIZE[0]}x"
        f"{SOURCE_SIZE[1]} JPEG source (variants made from its 1024 px WebP thumbnail),"
        " `w=<n>` (WebP, q 80), one request at a time:",
        "",
        "| Request | n | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for latency in latencies:
        values = latency.seconds
        p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
        lines.append(f"| {latency.what} | {len(values)} | {p50:.1f} | {p99:.1f} |")
    lines += [
        "",
        "CPU per variant, ours (`images.make_variant`, in its own process) against"
        " `vipsthumbnail` (start-up included), median (min-max) ms and the ratio rep by rep:",
        "",
        "| Variant | From | Ours CPU ms | vipsthumbnail CPU ms | Ratio | Goal | Met"
        " | Ratio, vips start-up left out | Wrote (ours; vips) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    vips_start = median([run_commands([["vipsthumbnail", "--version"]]) for _ in range(5)])
    for case in cases:
        per_rep = ratios(case.ours, case.vips)
        bare = ratios(case.ours, [max(v - vips_start, 1e-6) for v in case.vips])
        met = "yes" if per_rep and median(per_rep) <= GOAL else "**no**"
        source = "1024x768 JPEG" if case.source == "original" else "1024x768 WebP thumbnail"
        cells = [
            f"`{case.spec}`",
            source,
            spread([v * 1000 for v in case.ours]),
            spread([v * 1000 for v in case.vips]),
            f"{spread(per_rep)}x",
            f"<= {GOAL}x",
            met,
            f"{spread(bare)}x",
            f"{case.wrote.get('ours', '')}; {case.wrote.get('vips', '')}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "vipsthumbnail's start-up alone (`vipsthumbnail --version`):"
        f" {vips_start * 1000:.1f} ms CPU (median of 5), taken off each run for the last"
        " ratio. AVIF: vips's Q and Pillow's quality are different scales (see the sizes).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["serve"], help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=20, help="requests per latency row")
    parser.add_argument("--reps", type=int, default=5, help="timed CPU reps per system")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve()
        return 0
    if shutil.which("vipsthumbnail") is None:
        print("vipsthumbnail is not installed (make bench-deps)", file=sys.stderr)
        return 1
    command = shlex.join(
        ["python", "-m", "bench.variants", *(sys.argv[1:] if argv is None else argv)]
    )

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-variants-") as tmp:
        root = Path(tmp)
        photo = imagegen.jpeg_photo(root / "inputs", size=SOURCE_SIZE, gps=False)
        thumbnail = root / "inputs" / "thumbnail.webp"
        with Image.open(photo) as img:  # as the thumbnail task writes it: WebP q 80, method 1
            img.save(thumbnail, "WEBP", quality=80, method=1)
        log("latency: one server, requests one at a time")
        latencies = measure_latency(root, photo, args.requests)
        log("CPU: ours and vipsthumbnail, taking turns")
        sources = {"original": photo, "thumbnail": thumbnail}
        measure_cpu(CASES, sources, args.reps, root / "out", log)
    print(report(latencies, CASES, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
