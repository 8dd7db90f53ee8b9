"""The benchmark's report: one row per case, ours against the cheaper baseline, then every
rep and the machine. Kept apart from the measuring so that the numbers and their
presentation change on their own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import median
from bench.media_commands import FFMPEG, run_commands
from bench.media_inputs import Config
from bench.report import _command, _cpu_model, ratios, spread

Baseline = Callable[[Path, Path], list[list[str]]]


@dataclass
class Case:
    """One row: ours against the cheaper (by median) of the baselines, run alternately."""

    kind: str
    what: str
    job: str
    src: Path | None
    baselines: dict[str, Baseline]
    goal: float | None = None
    missing: str = ""  # why no baseline can run here
    ours: list[float] = field(default_factory=list)
    base: dict[str, list[float]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # system -> "1024x576 31 KiB, ..."
    error: str = ""

    def cheaper(self) -> str | None:
        measured = [name for name, values in self.base.items() if values]
        return min(measured, key=lambda name: median(self.base[name]), default=None)


def table(results: list[Case]) -> list[str]:
    lines = [
        "| Kind | What | Ours CPU s | Baseline | Baseline CPU s | Ratio | Goal | Met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in results:
        name = case.cheaper()
        base = case.base.get(name, []) if name else []
        per_run = ratios(case.ours, base)
        goal = f"<= {case.goal}x" if case.goal is not None else "report only"
        met = ""
        if case.goal is not None:
            met = "yes" if per_run and median(per_run) <= case.goal else "**no**"
        cells = [
            case.kind,
            case.what,
            spread(case.ours),
            name or (next(iter(case.baselines))),
            spread(base) if base else "n/a",
            f"{spread(per_run)}x" if per_run else "n/a",
            goal,
            met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def every_run(results: list[Case]) -> list[str]:
    lines = ["| Kind | System | Median (min-max) | Every rep | Wrote |", "|---|---|---|---|---|"]
    for case in results:
        for name, values in [("ours", case.ours), *case.base.items()]:
            runs = ", ".join(f"{v:.3f}" for v in values) or "n/a"
            wrote = case.outputs.get(name, "")
            lines.append(f"| {case.kind} | {name} | {spread(values)} | {runs} | {wrote} |")
    return lines


def versions() -> list[tuple[str, str]]:
    import av
    from PIL import features

    def package(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    pdfium = "?"
    with contextlib.suppress(Exception):
        import pypdfium2

        pdfium = str(pypdfium2.version.PDFIUM_INFO)
    return [
        ("PyAV / its FFmpeg", f"{package('av')} / {av.ffmpeg_version_info}"),
        ("pypdfium2 / PDFium", f"{package('pypdfium2')} / {pdfium}"),
        ("mutagen", package("mutagen")),
        ("Pillow / libwebp", f"{package('pillow')} / {features.version('webp')}"),
        ("pypdf (makes the PDF)", package("pypdf")),
        ("ffmpeg (Debian)", _command(["ffmpeg", "-version"], r"ffmpeg version (\S+)")),
        ("pdftoppm (poppler-utils)", _command(["pdftoppm", "-v"], r"pdftoppm version (\S+)")),
    ]


def startup_cost() -> str:
    """The CPU ffmpeg spends before it reads a byte: loading its ~100 shared libraries."""
    if shutil.which("ffmpeg") is None:
        return "n/a"
    samples = [run_commands([[*FFMPEG, "-version"]]) for _ in range(5)]
    return f"{median(samples):.3f} s"


def report(config: Config, results: list[Case], command: str, elapsed: float) -> str:
    now = dt.datetime.now(dt.UTC)
    mode = "smoke (tiny inputs: the figures mean nothing)" if config.smoke else "full"
    lines = [
        f"# Media previews: CPU per file, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}`. Mode: {mode}; one untimed warm-up, then {config.reps} "
        "rep(s), the systems taking turns; medians with (min-max). CPU is user + system "
        "seconds over every thread (ours: `time.process_time` in its own process; a "
        "baseline: `os.wait4` on each command, start-up included). The ratio is taken rep by "
        "rep against the cheaper baseline, which is named. Sizes 1024 and 256 px long edge. "
        f'Took {elapsed:.0f} s. How to read this: bench/README.md, "Media previews".',
        "",
        *table(results),
        "",
    ]
    notes = [f"- {c.kind}: {c.error}" for c in results if c.error]
    notes += [f"- {c.kind}: baseline not run: {c.missing}" for c in results if c.missing]
    if notes:
        lines += ["Not measured here:", "", *notes, ""]
    lines += ["## Every system", "", *every_run(results), ""]
    lines += [f"ffmpeg's start-up alone (`ffmpeg -version`): {startup_cost()} CPU.", ""]
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    machine = [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))})"),
        ("Python", sys.version.split()[0]),
        *versions(),
        ("Load average at report time", load),
    ]
    lines += ["## Machine and versions", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine]
    return "\n".join(lines) + "\n"
