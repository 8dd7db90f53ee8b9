"""The goal rows of the report, S1-S14: what each row measures, the baseline measured
beside it and the goal's bound. Kept apart from ``report.py``, which renders them, so
that a goal can change without touching the table's code."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench import batch
from bench.scenarios import Config


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
