"""Run the benchmark suite and write the markdown report.

    python -m bench.run                  # everything, 3 alternated runs: bench/results/
    python -m bench.run --smoke --out D  # seconds, tiny inputs: proves the suite still runs
    python -m bench.run --only large,tus  # some groups: large small cpu photos batch asgi tus

See bench/README.md for what each scenario measures and how to read the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import batch, report, scenarios, systems, tus

RESULTS = Path(__file__).resolve().parent / "results"

GROUPS: dict[str, tuple[str, Callable[[scenarios.Context], None]]] = {
    "large": ("S1-S3: one large upload", scenarios.large_uploads),
    "small": ("S4, S8: many small uploads", scenarios.small_uploads),
    "cpu": ("S5: thumbnail CPU per image", scenarios.thumbnail_cpu),
    "photos": ("S6-S8: a batch of photos", scenarios.photo_batch),
    "batch": ("S12-S14: scripted batches with the CLI", batch.batch_uploads),
    "asgi": ("Appendix: other ASGI servers", scenarios.asgi_large),
    "tus": ("S9-S11: resumable uploads (tus)", tus.tus_uploads),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one run, seconds")
    parser.add_argument("--runs", type=int, help="alternated runs per scenario")
    parser.add_argument("--out", type=Path, help="report directory (default bench/results)")
    parser.add_argument("--only", help="comma-separated groups: " + " ".join(GROUPS))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="UPLOADS_X=VALUE",
        help="a setting for every uploads-api server (repeatable): to try a change",
    )
    args = parser.parse_args(argv)

    config = scenarios.SMOKE if args.smoke else scenarios.FULL
    if args.runs:
        config = dataclasses.replace(config, runs=args.runs)
    chosen = args.only.split(",") if args.only else list(GROUPS)
    if not config.asgi and not args.only:
        chosen.remove("asgi")
    out = args.out or RESULTS
    for item in args.env:
        name, _, value = item.partition("=")
        systems.BENCH_ENV[name] = value

    missing = systems.missing()
    for reason in missing.values():
        print(f"bench: {reason}; those rows will read n/a", file=sys.stderr)

    root = Path(tempfile.mkdtemp(prefix="uploads-bench-"))
    results = scenarios.Results()
    ctx = scenarios.Context(config, root, results, missing, log=lambda m: print(m, flush=True))
    started = time.monotonic()
    failed: dict[str, str] = {}
    try:
        for group in chosen:
            title, run = GROUPS[group]
            print(f"{title}", flush=True)
            group_started = time.monotonic()
            try:
                run(ctx)
            except Exception:
                failed[group] = traceback.format_exc()
                print(failed[group], file=sys.stderr)
            results.details[f"seconds.{group}"] = round(time.monotonic() - group_started, 1)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - started
    path = write(out, config, results, failed, elapsed, dated=not args.smoke and not args.only)
    print(f"wrote {path} in {elapsed:.0f} s")
    return 1 if failed else 0


def write(
    out: Path,
    config: scenarios.Config,
    results: scenarios.Results,
    failed: dict[str, str],
    elapsed: float,
    *,
    dated: bool,
) -> Path:
    report.derive(results)
    table, met, total = report.goal_table(config, results)
    now = dt.datetime.now(dt.UTC)
    mode = "smoke (tiny inputs: the figures mean nothing)" if config.smoke else "full"
    lines = [
        f"# uploads-api benchmark, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Mode: {mode}. {config.runs} alternated run(s) per scenario; medians with "
        f"(min-max) over runs; a ratio is taken run by run against the baseline measured "
        f"beside it. {met} of {total} goals met. Took {elapsed:.0f} s. "
        f"Command: `make bench` (`python -m bench.run`). How to read this: bench/README.md.",
        "",
        f"uploads-api settings: `{' '.join(f'{k}={v}' for k, v in systems.BENCH_ENV.items())}`",
        "",
        *table,
        "",
    ]
    lines += report.skipped(results)
    if failed:
        lines += ["Failed groups (their rows read n/a):", ""]
        for group, error in failed.items():
            last = error.strip().splitlines()[-1]
            lines.append(f"- {group}: `{last}`")
        lines.append("")
    asgi = report.asgi_table(results)
    if asgi:
        lines += ["## Appendix: the same app under other ASGI servers", "", *asgi, ""]
    lines += ["## Every figure", "", *report.all_figures(results), ""]
    extra = {k: v for k, v in results.details.items() if not k.startswith("seconds.")}
    if extra:
        lines += ["## Details", "", "```json", json.dumps(extra, indent=1), "```", ""]
    timings = {k[8:]: v for k, v in results.details.items() if k.startswith("seconds.")}
    lines += ["## Machine and versions", "", *report.machine(), ""]
    lines += ["Seconds per group: " + ", ".join(f"{k} {v}" for k, v in timings.items()), ""]

    out.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    latest = out / "latest.md"
    latest.write_text(text)
    if dated:
        (out / f"{now:%Y-%m-%d}.md").write_text(text)
    raw = out / "raw"
    raw.mkdir(exist_ok=True)
    (raw / f"{now:%Y%m%dT%H%M%S}.json").write_text(
        json.dumps({"values": results.values, "details": results.details}, indent=1)
    )
    return latest


if __name__ == "__main__":
    sys.exit(main())
