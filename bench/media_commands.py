"""The baselines: the command lines a server would otherwise shell out to (ffmpeg,
pdftoppm), and the CPU they take by the kernel's account, start-up included. Kept apart
so that other benchmarks (``bench.variants``) can time commands the same way.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from uploads_api.config import Settings
from uploads_api.media.images import fit_within
from uploads_api.media.outputs import OUTPUTS

# The server's default sizes, read from its Settings so that the bench follows them.
SIZES: tuple[int, ...] = tuple(Settings.model_fields["thumbnail_sizes"].default)  # (256, 1024)
# ffmpeg writes webp as we do (quality 80, method 1). libwebp in ffmpeg calls the method
# compression_level and defaults it to 4: half as much again for the audio row's cover.
_WEBP = OUTPUTS["webp"].options
FFMPEG_WEBP = [
    "-c:v", "libwebp",
    "-quality", str(_WEBP["quality"]),
    "-compression_level", str(_WEBP["method"]),
]  # fmt: skip
FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def run_commands(commands: list[list[str]]) -> float:
    """Run each command in turn; the user plus system CPU seconds they used, start-up
    included, from ``os.wait4`` on each (so nothing else this process reaps is counted)."""
    total = 0.0
    for command in commands:
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
            )
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                errors.seek(0)
                tail = errors.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"{shlex.join(command)} exited {process.returncode}: {tail}")
        total += usage.ru_utime + usage.ru_stime
    return total


def ffmpeg_per_size(
    src: Path, out: Path, size: tuple[int, int], seek: list[str]
) -> list[list[str]]:
    """One ffmpeg per thumbnail: each demuxes, decodes and scales on its own."""
    return [
        [*FFMPEG, *seek, "-i", str(src), "-map", "0:v:0", "-frames:v", "1",
         "-vf", "scale={}:{}".format(*fit_within(size, edge)), *FFMPEG_WEBP, f"{out}/{edge}.webp"]
        for edge in SIZES
    ]  # fmt: skip


def ffmpeg_split(src: Path, out: Path, size: tuple[int, int], seek: list[str]) -> list[list[str]]:
    """One ffmpeg for both: decode once, scale to the largest, ``split``, scale that to the
    smaller (as ours makes 256 px from the 1024 px)."""
    largest, *smaller = sorted(SIZES, reverse=True)
    graph = "[0:v:0]scale={}:{},split={}".format(*fit_within(size, largest), len(SIZES))
    graph += "".join(f"[s{i}]" for i in range(len(SIZES))) + ";"
    graph += ";".join(
        "[s{}]scale={}:{}[o{}]".format(i + 1, *fit_within(size, edge), i + 1)
        for i, edge in enumerate(smaller)
    )
    command = [*FFMPEG, *seek, "-i", str(src), "-filter_complex", graph.rstrip(";")]
    for i, edge in enumerate([largest, *smaller]):
        command += ["-map", f"[{'s0' if i == 0 else f'o{i}'}]", "-frames:v", "1"]
        command += [*FFMPEG_WEBP, f"{out}/{edge}.webp"]
    return [command]


def pdftoppm(src: Path, out: Path, page_size: tuple[float, float]) -> list[list[str]]:
    """One pdftoppm per size: it renders one resolution per run. ``-r`` is the resolution
    that puts the long edge at the size, as ours' render scale does; ``-png`` because it
    writes no webp."""
    commands = []
    for edge in SIZES:
        dpi = 72 * edge / max(page_size)
        commands.append(
            ["pdftoppm", "-f", "1", "-l", "1", "-singlefile", "-png", "-r", f"{dpi:.4f}",
             str(src), f"{out}/{edge}"]
        )  # fmt: skip
    return commands
