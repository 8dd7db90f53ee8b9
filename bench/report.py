"""The markdown report: one row per goal, then every figure, the machine and the versions."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from bench import batch
from bench.measure import median
from bench.scenarios import Config, Results


@dataclass(frozen=True)
class Row:
    scenario: str
    what: str
    ours: str
    unit: str
    goal: str
    base: str | None = None  # a baseline measured in the same runs: the goal is a ratio
    base_label: str = ""
    op: str = ">="  # ">=", "<=" or "<"
    bound: float | None = None  # None: context only, no goal
    on_ratio: bool = True  # the goal bounds ours/baseline, else ours alone
    # The goal bounds ours - baseline, run by run (shown as +N in the Ratio column).
    on_difference: bool = False


def rows(config: Config) -> list[Row]:
    size = f"{config.big_size // (1024 * 1024)} MiB"
    rate = "MiB/s"
    out = [
        Row(
            "S1",
            f"{size} `curl -F`, sha256 checked",
            "S1.ours",
            rate,
            ">= 0.8x nginx",
            "S1.nginx",
            "nginx `client_body_in_file_only`",
            ">=",
            0.8,
        ),
        Row(
            "S1",
            f"{size} `curl -F`, sha256 checked",
            "S1.ours",
            rate,
            ">= 3x tutorial",
            "S1.tutorial-read",
            "tutorial `await file.read()`",
            ">=",
            3.0,
        ),
        Row(
            "S1",
            f"{size} `curl -F`, sha256 checked",
            "S1.ours",
            rate,
            ">= 3x tutorial",
            "S1.tutorial-chunked",
            "tutorial aiofiles 1 MiB chunks",
            ">=",
            3.0,
        ),
        Row(
            "S2",
            f"{size} `curl -T` raw PUT",
            "S2.ours",
            rate,
            ">= 0.9x nginx PUT",
            "S2.nginx",
            "nginx WebDAV `PUT`",
            ">=",
            0.9,
        ),
        Row(
            "S3",
            f"peak RSS, server + image pool, during S1 ({size})",
            "S3.S1.ours.big.tree_rss",
            "MiB",
            "< 100 MiB",
            op="<",
            bound=100.0,
        ),
        Row(
            "S3",
            f"peak RSS, server + image pool, during S2 ({size})",
            "S3.S2.ours.big.tree_rss",
            "MiB",
            "< 100 MiB",
            op="<",
            bound=100.0,
        ),
        Row(
            "S3",
            f"peak RSS growth, S1 1 MiB -> {size}",
            "S3.S1.growth",
            "MiB",
            "flat: <= 16 MiB",
            op="<=",
            bound=16.0,
        ),
        Row(
            "S3",
            f"peak RSS growth, S2 1 MiB -> {size}",
            "S3.S2.growth",
            "MiB",
            "flat: <= 16 MiB",
            op="<=",
            bound=16.0,
        ),
        Row(
            "S4",
            f"{config.s4_total} x 10 KiB at {config.s4_concurrency} clients",
            "S4.ours.rate",
            "uploads/s",
            ">= 1.0x tutorial",
            "S4.tutorial.rate",
            "tutorial `await file.read()`",
            ">=",
            1.0,
        ),
        Row(
            "S4",
            "p99 upload latency",
            "S4.ours.p99_ms",
            "ms",
            "<= tutorial p99",
            "S4.tutorial.p99_ms",
            "tutorial p99",
            "<=",
            1.0,
        ),
    ]
    for label in config.s5_images:
        what = f"CPU per image, {label} JPEG -> 1024 + 256 webp"
        out += [
            Row(
                "S5",
                what,
                f"S5.{label}.ours",
                "s",
                "<= 0.35x vipsthumbnail",
                f"S5.{label}.vipsthumbnail",
                "`vipsthumbnail` once per size",
                "<=",
                0.35,
            ),
            Row(
                "S5",
                what,
                f"S5.{label}.ours",
                "s",
                "<= 1.0x pyvips",
                f"S5.{label}.pyvips",
                "pyvips, one decode",
                "<=",
                1.0,
            ),
            Row(
                "S5",
                what,
                f"S5.{label}.ours",
                "s",
                "(context)",
                f"S5.{label}.tutorial",
                "tutorial Pillow `thumbnail` per size",
                "<=",
                None,
            ),
        ]
    out += [
        Row("S6", f"{config.s6_photos} photos uploaded at once, until all `ready`",
            "S6.ours", "images/s", ">= 0.8x kernel", "S6.kernel",
            f"bare `make_thumbnails`, {os.cpu_count()} processes", ">=", 0.8),
        Row("S7", "`/healthz` every 20 ms during S6, p99", "S7.ours.p99_ms", "ms", "< 20 ms",
            op="<", bound=20.0),
        Row("S8", "S4 with `--workers 2`", "S4.ours-w2.rate", "uploads/s",
            ">= 1.6x (client room)", "S4.ours.rate", "S4, 1 worker", ">=", 1.6),
        Row("S8", "S6 with `--workers 2`", "S6.ours-w2", "images/s", ">= 1.6x (client room)",
            "S6.ours", "S6, 1 worker", ">=", 1.6),
    ]  # fmt: skip
    return out + tus_rows(config) + batch_rows(config)


def tus_rows(config: Config) -> list[Row]:
    """S9-S11 (``bench/tus.py``): resumable uploads."""
    size = f"{config.big_size // (1024 * 1024)} MiB"
    small = f"{config.tus_small_size // (1024 * 1024)} MiB"
    s9 = f"{size} through tus, {config.tus_chunk // (1024 * 1024)} MiB `PATCH`es, one stream"
    rate = "MiB/s"
    out = [
        Row("S9", s9, "S9.ours", rate, ">= 0.9x our PUT", "S9.put",
            "uploads-api raw `PUT`, one request", ">=", 0.9),
        Row("S9", s9, "S9.ours", rate, ">= 1.5x tuspyserver", "S9.tuspyserver",
            "tuspyserver (uvicorn)", ">=", 1.5),
        Row("S9", s9, "S9.ours", rate, ">= 1.0x @tus/server", "S9.tus-node",
            "@tus/server + file store (Node)", ">=", 1.0),
    ]  # fmt: skip
    for name, label in (
        ("put", "uploads-api raw `PUT`"),
        ("tuspyserver", "tuspyserver"),
        ("tus-node", "@tus/server"),
    ):
        out.append(
            Row("S9", "server CPU s per GiB (user + system, process tree)",
                "S9.ours.cpu_per_gib", "s", "(context)", f"S9.{name}.cpu_per_gib", label,
                "<=", None)
        )  # fmt: skip
    streams = config.tus_streams
    out += [
        Row("S10", f"{size} as {streams} parallel partial uploads + final, `--workers 2`",
            "S10.ours-w2", rate, ">= 1.3x S9", "S9.ours", "S9 (uploads-api tus), same run",
            ">=", 1.3),
        Row("S10", "server CPU s per GiB (user + system, process tree)",
            "S10.ours-w2.cpu_per_gib", "s", "(context)", "S9.ours.cpu_per_gib", "S9", "<=",
            None),
        Row("S11", f"peak RSS of the server process during S9 ({size})",
            "S11.ours.big.process_rss", "MiB", "<= S3 + 10 MiB", "S11.reference",
            "S3: raw PUT's peak, same run", "<=", 10.0, on_difference=True),
        Row("S11", f"peak RSS of either worker process during S10 ({size})",
            "S11.ours-w2.big.process_rss", "MiB", "<= S3 + 10 MiB", "S11.reference",
            "S3: raw PUT's peak, same run", "<=", 10.0, on_difference=True),
        Row("S11", f"peak RSS growth, S9 {small} -> {size}", "S11.S9.growth", "MiB",
            "flat: <= 16 MiB", op="<=", bound=16.0),
        Row("S11", f"peak RSS growth, S10 {small} -> {size}", "S11.S10.growth", "MiB",
            "flat: <= 16 MiB", op="<=", bound=16.0),
    ]  # fmt: skip
    return out


def batch_rows(config: Config) -> list[Row]:
    """S12-S14, with the copy ceiling and the CPU of both ends beside them."""
    sizes = batch.SMOKE if config.smoke else batch.FULL
    ceiling = "`cp -r` + `sync`, same tree"
    cli = "CLI `upload --recursive -j 4`"
    return [
        Row("S12", f"{cli}, {sizes.small_files:,} x 10 KiB, fresh server", "S12.ours", "files/s",
            ">= 1,000 files/s", "S12.ceiling", ceiling, ">=", 1000.0, on_ratio=False),
        Row("S12", "CPU: server (vs client)", "S12.server_cpu", "s", "(context)",
            "S12.client_cpu", "client CPU"),
        Row("S13", f"{cli}, {sizes.large_files:,} x 1 MiB", "S13.ours", "MiB/s", ">= 0.8x S1",
            "S13.S1", "S1: one large `curl -F`", ">=", 0.8),
        Row("S13", f"{cli}, {sizes.large_files:,} x 1 MiB", "S13.ours", "MiB/s", "(context)",
            "S13.ceiling", ceiling),
        Row("S13", "CPU: server (vs client)", "S13.server_cpu", "s", "(context)",
            "S13.client_cpu", "client CPU"),
        Row("S14", "`--skip-existing`, S12's files all present", "S14.seconds", "s",
            "<= 3 s", op="<=", bound=3.0),
        Row("S14", "CPU: server (vs client)", "S14.server_cpu", "s", "(context)",
            "S14.client_cpu", "client CPU"),
    ]  # fmt: skip


def _num(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def spread(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return _num(values[0])
    return f"{_num(median(values))} ({_num(min(values))}-{_num(max(values))})"


def _signed(values: Sequence[float]) -> str:
    text = spread(values)
    return text if text.startswith("-") else "+" + text


def ratios(ours: Sequence[float], base: Sequence[float]) -> list[float]:
    """Per-run ratios: run i of ours against run i of the baseline, measured side by side."""
    return [a / b for a, b in zip(ours, base, strict=False) if b]


def differences(ours: Sequence[float], base: Sequence[float]) -> list[float]:
    """Per-run differences: run i of ours less run i of the baseline."""
    return [a - b for a, b in zip(ours, base, strict=False)]


def _met(value: float, op: str, bound: float) -> bool:
    if math.isnan(value):
        return False
    return {">=": value >= bound, "<=": value <= bound, "<": value < bound}[op]


def derive(results: Results) -> None:
    """Figures computed from others: RSS growth from 1 MiB to the large upload; S11's
    reference (S3's peak during the raw PUT of the same run, when the large group ran,
    else the peak during S9's own raw PUT) and growth from the small file to the big."""
    values = results.values
    for scenario in ("S1", "S2"):
        big = values.get(f"S3.{scenario}.ours.big.tree_rss", [])
        small = values.get(f"S3.{scenario}.ours.small.tree_rss", [])
        values[f"S3.{scenario}.growth"] = differences(big, small)
    if not values.get("S11.ours.big.process_rss"):
        return
    reference = "S3.S2.ours.big.tree_rss"
    if not values.get(reference):
        reference = "S11.put.big.tree_rss"
    values["S11.reference"] = list(values.get(reference, []))
    results.details["S11.reference"] = reference
    for scenario, name in (("S9", "ours"), ("S10", "ours-w2")):
        big = values.get(f"S11.{name}.big.process_rss", [])
        small = values.get(f"S11.{name}.small.process_rss", [])
        values[f"S11.{scenario}.growth"] = differences(big, small)


def goal_table(
    config: Config, results: Results, only: Collection[str] | None = None
) -> tuple[list[str], int, int]:
    """The goal rows (of the scenarios ``only``, or all), how many goals are met, of how
    many."""
    lines = [
        "| # | Measure | uploads-api | Baseline (same runs) | Baseline | Ratio | Goal | Met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    met = total = 0
    for row in rows(config):
        if only is not None and row.scenario not in only:
            continue
        ours = results.values.get(row.ours, [])
        cells = [row.scenario, row.what, f"{spread(ours)} {row.unit}"]
        value = median(ours)
        if row.base is None:
            cells += ["-", "-", "-"]
        else:
            base = results.values.get(row.base, [])
            cells += [row.base_label, f"{spread(base)} {row.unit}" if base else "n/a"]
            if row.on_difference:
                per_run = differences(ours, base)
                cells.append(f"{_signed(per_run)} {row.unit}" if per_run else "n/a")
                value = median(per_run)
            else:
                per_run = ratios(ours, base)
                cells.append(f"{spread(per_run)}x" if per_run else "n/a")
                if row.on_ratio:
                    value = median(per_run)
        cells.append(row.goal)
        if row.bound is None:
            cells.append("")
        else:
            verdict = _met(value, row.op, row.bound)
            total += 1
            met += verdict
            cells.append("yes" if verdict else "**no**")
        lines.append("| " + " | ".join(cells) + " |")
    return lines, met, total


def asgi_table(results: Results) -> list[str]:
    """The same app under uvicorn, granian and hypercorn: S1 and S4, ratios to uvicorn."""
    v = results.values
    if not any(key.startswith("A.S1.") for key in v):
        return []
    lines = [
        "| ASGI server | S1 MiB/s | vs uvicorn | S4 uploads/s | vs uvicorn | S4 p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for server in ("uvicorn", "granian", "hypercorn"):
        s4 = "ours" if server == "uvicorn" else server
        s1_ratio = ratios(v.get(f"A.S1.{server}", []), v.get("A.S1.uvicorn", []))
        s4_ratio = ratios(v.get(f"S4.{s4}.rate", []), v.get("S4.ours.rate", []))
        lines.append(
            f"| {server} | {spread(v.get(f'A.S1.{server}', []))} | {spread(s1_ratio)}x "
            f"| {spread(v.get(f'S4.{s4}.rate', []))} | {spread(s4_ratio)}x "
            f"| {spread(v.get(f'S4.{s4}.p99_ms', []))} |"
        )
    return lines


def skipped(results: Results) -> list[str]:
    """What could not be measured here, and why: lines for the report, or none."""
    if not results.skipped:
        return []
    reasons = [f"- {name}: {reason}" for name, reason in sorted(results.skipped.items())]
    return ["Not measured here:", "", *reasons, ""]


def all_figures(results: Results) -> list[str]:
    lines = ["| Figure | Median (min-max) | Every run |", "|---|---|---|"]
    for key in sorted(results.values):
        values = results.values[key]
        lines.append(f"| `{key}` | {spread(values)} | {', '.join(_num(v) for v in values)} |")
    return lines


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _command(args: list[str], pattern: str = r"(.+)") -> str:
    if shutil.which(args[0]) is None and not os.path.exists(f"/usr/sbin/{args[0]}"):
        return "not installed"
    binary = shutil.which(args[0]) or f"/usr/sbin/{args[0]}"
    done = subprocess.run([binary, *args[1:]], capture_output=True, text=True)
    found = re.search(pattern, (done.stdout + done.stderr).strip())
    return found.group(1) if found else "?"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine() -> list[str]:
    from PIL import features

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    uvloop = _version("uvloop") != "not installed"
    httptools = _version("httptools") != "not installed"
    loop = "uvloop" if uvloop else "asyncio"
    http = "httptools" if httptools else "h11"
    rows = [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} cores"),
        ("Memory", f"{mem:.1f} GiB"),
        ("OS", f"{platform.platform()}"),
        ("Python", sys.version.split()[0]),
        ("uvicorn loop / http (auto)", f"{loop} / {http}"),
        ("libjpeg-turbo / libwebp (Pillow)",
         f"{features.version('libjpeg_turbo')} / {features.version('webp')}"),
        ("nginx", _command(["nginx", "-v"], r"nginx/(\S+)")),
        ("libvips (vipsthumbnail)", _command(["vipsthumbnail", "--vips-version"], r"(\S+ \S+)")),
        ("curl", _command(["curl", "--version"], r"curl (\S+)")),
    ]  # fmt: skip
    packages = [
        "uvicorn", "uvloop", "httptools", "fastapi", "starlette", "python-multipart",
        "pillow", "pillow-heif", "aiofiles", "sqlalchemy", "aiosqlite", "pyvips",
        "granian", "hypercorn",
    ]  # fmt: skip
    rows += [(name, _version(name)) for name in packages]
    load = os.getloadavg()
    rows.append(("Load average at report time", " / ".join(f"{v:.2f}" for v in load)))
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
