"""The markdown report: one row per goal (the rows are in ``goals.py``), then every figure,
the machine and the versions."""

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

from bench.goals import rows
from bench.measure import median
from bench.scenarios import Config, Results


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
