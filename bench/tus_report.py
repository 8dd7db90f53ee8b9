"""``bench/results/tus.md``: S9-S11's goal rows (``goals.tus_rows``), then each system's
figures side by side, S10 by phase, every figure, the machine and the versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Sequence

from bench import report
from bench.baselines import tus_node
from bench.measure import MiB
from bench.scenarios import Config, Results

PACKAGES = ("uvicorn", "uvloop", "httptools", "fastapi", "starlette", "tuspyserver", "psutil")


def _cells(values: dict[str, list[float]], key: str, unit: str = "") -> str:
    found: Sequence[float] = values.get(key, [])
    return f"{report.spread(found)}{unit}" if found else "n/a"


def method(config: Config, command: str) -> str:
    size, small = config.big_size // MiB, config.tus_small_size // MiB
    chunk = config.tus_chunk // MiB
    return (
        f"Command: `{command}`. A {size} MiB file of random bytes (and a {small} MiB one for"
        f" S11), {config.runs} run(s); in each run the systems take turns in the order of the"
        " table below, each on a fresh server started before its turn (untimed), after an"
        " untimed 1 MiB warm-up. Medians with (min-max) over runs; a ratio or difference is"
        " taken run by run. The client is the same for every system: `bench/tus_client.py`,"
        " a process of its own, http.client on one keep-alive connection per stream, each"
        f" chunk read from the file with `os.pread` as it is sent: a `POST` (creation), then"
        f" `PATCH`es of {chunk} MiB, **no per-chunk checksum** (no `Upload-Checksum`); the"
        " raw `PUT` sends the whole file as one body, read the same way. Time runs from the"
        " first request to the last answer (the last 204; for the `PUT` and S10's final"
        " concatenation, the 201). Server CPU is user + system seconds over the server's"
        " process tree (psutil), read just before and after. Peak RSS is sampled every 20"
        " ms; *per process* is the highest any one process of the tree reached (the server,"
        " or either worker with `--workers 2`). After each upload, untimed, the stored bytes"
        " are checked: uploads-api's sha256 and size from `GET /v1/files/{File-Id}`, the"
        " baselines' stored file hashed on disk; then they are removed and `sync` runs."
        " uploads-api fsyncs every chunk before its 204 (and the file at completion);"
        " tuspyserver and @tus/server never fsync. How to read this: bench/README.md."
    )


def systems_table(results: Results, systems: Sequence[tuple[str, str, str]]) -> list[str]:
    """One row per system (its name, scenario and label, in the order they ran)."""
    values = results.values
    lines = [
        "| System | Scenario | MiB/s | Seconds | Server CPU s per GiB | Client CPU s"
        " | Peak RSS per process, small | Peak RSS per process, big | RSS at rest |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, scenario, label in systems:
        key = f"{scenario}.{name}"
        s11 = f"S11.{name}"
        cells = [
            label,
            scenario,
            _cells(values, key),
            _cells(values, f"{key}.seconds"),
            _cells(values, f"{key}.cpu_per_gib"),
            _cells(values, f"{key}.client_cpu"),
            _cells(values, f"{s11}.small.process_rss", " MiB"),
            _cells(values, f"{s11}.big.process_rss", " MiB"),
            _cells(values, f"{s11}.big.rest_rss", " MiB"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def phases_table(results: Results) -> list[str]:
    values = results.values
    parts = values.get("S10.ours-w2.parts_seconds", [])
    final = values.get("S10.ours-w2.final_seconds", [])
    total = values.get("S10.ours-w2.seconds", [])
    s9 = values.get("S9.ours.seconds", [])
    return [
        "| S10 phase | Seconds |",
        "|---|---|",
        f"| partial uploads, first request to the last partial's 204 | {report.spread(parts)} |",
        f"| final `POST` (concatenation), to its 201 | {report.spread(final)} |",
        f"| total | {report.spread(total)} |",
        f"| S9, one stream, same runs | {report.spread(s9)} |",
        f"| S9 / S10, run by run | {report.spread(report.ratios(s9, total))}x |",
    ]


def machine() -> list[str]:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    rows = [
        ("CPU", f"{report._cpu_model()}, {os.cpu_count()} cores"),
        ("Memory", f"{mem:.1f} GiB"),
        ("OS", platform.platform()),
        ("Python", sys.version.split()[0]),
        ("Node", report._command(["node", "--version"], r"v(\S+)")),
        ("@tus/server", tus_node.version()),
    ]
    for name in PACKAGES:
        try:
            rows.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    rows.append(("Load average at report time", " / ".join(f"{v:.2f}" for v in os.getloadavg())))
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def render(
    config: Config,
    results: Results,
    systems: Sequence[tuple[str, str, str]],
    command: str,
    elapsed: float,
) -> str:
    table, met, total = report.goal_table(config, results, only={"S9", "S10", "S11"})
    reference = results.details.get("S11.reference", "n/a")
    lines = [
        f"# Resumable uploads (tus): S9-S11, {time.strftime('%Y-%m-%d')}",
        "",
        method(config, command),
        "",
        f"{met} of {total} goals met. Took {elapsed:.0f} s.",
        "",
        *table,
        "",
        f"S11's reference is `{reference}` (S3's figure when the large group ran in the same"
        " invocation, else the peak during this run's raw `PUT`).",
        "",
    ]
    lines += report.skipped(results)
    lines += [
        "## Each system",
        "",
        *systems_table(results, systems),
        "",
        *phases_table(results),
        "",
    ]
    lines += ["## Every figure", "", *report.all_figures(results), ""]
    lines += ["## Machine and versions", "", *machine(), ""]
    return "\n".join(lines)
