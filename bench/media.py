"""CPU seconds per file for the previews of a video, a PDF and an audio cover, ours against
the command-line tools a server would otherwise shell out to.

    python -m bench.media                 # 3 reps: bench/results/media.md
    python -m bench.media --reps 5        # the committed figures
    python -m bench.media --smoke         # tiny inputs, 1 rep: bench/results/raw/smoke/media.md

Measured as ``bench.kernel`` measures thumbnails: ours is the pool-side function the media
task calls, run in a child process of its own (``serve``) and timed with
``time.process_time`` (every thread of that process); a baseline is a command whose CPU is
its ``os.wait4`` resource usage, start-up included. One untimed warm-up each, then the
systems take turns rep by rep. bench/README.md ("Media previews") says what runs and why.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from PIL import Image

from bench.media_commands import SIZES, ffmpeg_per_size, ffmpeg_split, pdftoppm, run_commands
from bench.media_inputs import A4, FULL, SMOKE, Config, Inputs, make_inputs
from bench.media_report import Baseline, Case, report
from uploads_api.config import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Inputs take minutes to make (1,800 frames through x264): made once, git-ignored.
CACHE = RESULTS / "raw" / "media-inputs"

# The server's defaults, read from its Settings so that the bench follows them.
_SETTINGS = Settings.model_fields
FORMAT: str = _SETTINGS["thumbnail_format"].default  # "webp"
MAX_PIXELS: int = _SETTINGS["max_image_pixels"].default  # 100_000_000


# --- ours: the pool-side functions, in a process of their own ---------------------------


def ours_video(src: str, out_dir: str) -> None:
    from uploads_api.config import DEFAULT_VIDEO_FORMATS
    from uploads_api.media.video import make_video_thumbnails

    make_video_thumbnails(src, out_dir, SIZES, FORMAT, DEFAULT_VIDEO_FORMATS, MAX_PIXELS)


def ours_pdf(src: str, out_dir: str, fmt: str = FORMAT) -> None:
    from uploads_api.media.pdf import make_pdf_thumbnails

    make_pdf_thumbnails(src, out_dir, SIZES, fmt, MAX_PIXELS)


def ours_pdf_png(src: str, out_dir: str) -> None:
    ours_pdf(src, out_dir, "png")


def ours_audio(src: str, out_dir: str) -> None:
    from uploads_api.config import DEFAULT_IMAGE_FORMATS
    from uploads_api.media.audio import make_audio_thumbnails, read_audio_metadata

    read_audio_metadata(src)
    make_audio_thumbnails(src, out_dir, SIZES, FORMAT, DEFAULT_IMAGE_FORMATS, MAX_PIXELS)


OURS: dict[str, Callable[[str, str], None]] = {
    "video": ours_video,
    "pdf": ours_pdf,
    "pdf-png": ours_pdf_png,
    "audio": ours_audio,
}


def serve() -> None:
    """Answer ``job<TAB>src<TAB>out_dir`` lines with the CPU seconds each took, as JSON."""
    from uploads_api.media.worker import configure_worker

    configure_worker(MAX_PIXELS)  # the pool's initializer: pixel limit, HEIF/AVIF openers
    for line in sys.stdin:
        job, src, out_dir = line.rstrip("\n").split("\t")
        started = time.process_time()
        try:
            OURS[job](src, out_dir)
        except Exception as exc:  # reported for this row; the next job still runs
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
            continue
        print(json.dumps({"cpu": time.process_time() - started}), flush=True)


class OursProcess:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.media", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def run(self, job: str, src: Path, out: Path) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{job}\t{src}\t{out}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"bench.media serve exited with {self.process.wait()}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"ours failed: {answer['error']}")
        return float(answer["cpu"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(60)


# --- the cases --------------------------------------------------------------------------


def video_facts(src: Path) -> tuple[tuple[int, int], float]:
    """Size and the poster time, 10% of the duration as ours takes it, read untimed so that
    the ffmpeg command can be written out in full. ffmpeg's ``-ss`` adds the container's
    start time itself, as ours does."""
    import av

    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        duration = (container.duration or 0) / av.time_base
    return size, 0.1 * duration


def cases(config: Config, inputs: Inputs) -> list[Case]:
    w, h = config.video_size
    video_size, poster_at = video_facts(inputs.video)
    seek = ["-ss", f"{poster_at:.3f}"]
    with Image.open(io.BytesIO(_cover_bytes(inputs.mp3))) as cover:
        cover_size = cover.size
    sizes = " + ".join(str(s) for s in sorted(SIZES, reverse=True))
    no_ffmpeg = "" if shutil.which("ffmpeg") else "ffmpeg is not installed (make bench-deps)"
    no_pdftoppm = "" if shutil.which("pdftoppm") else "pdftoppm is not installed (make bench-deps)"

    def ffmpeg(size: tuple[int, int], seek: list[str]) -> dict[str, Baseline]:
        return {
            "ffmpeg, split": lambda src, out: ffmpeg_split(src, out, size, seek),
            "ffmpeg, one per size": lambda src, out: ffmpeg_per_size(src, out, size, seek),
        }

    pdf_what = f"{config.pdf_pages}-page A4 PDF, page 1"
    return [
        Case(
            "video",
            f"{w}x{h} {config.video_seconds} s H.264 mp4, {config.fps} fps: frame at 10% "
            f"to {sizes} webp",
            "video",
            inputs.video,
            ffmpeg(video_size, seek),
            goal=0.5,
            missing=no_ffmpeg,
        ),
        Case(
            "pdf",
            f"{pdf_what} to {sizes} webp (pdftoppm: png)",
            "pdf",
            inputs.pdf,
            {"pdftoppm": lambda src, out: pdftoppm(src, out, A4)},
            missing=no_pdftoppm,
            error=inputs.pdf_error,
        ),
        Case(
            "pdf, png both",
            f"{pdf_what} to {sizes} png",
            "pdf-png",
            inputs.pdf,
            {"pdftoppm": lambda src, out: pdftoppm(src, out, A4)},
            missing=no_pdftoppm,
            error=inputs.pdf_error,
        ),
        Case(
            "audio",
            f"{config.audio_seconds} s mp3 with a {cover_size[0]} px JPEG cover: metadata, "
            f"cover to {sizes} webp (never upscaled)",
            "audio",
            inputs.mp3,
            ffmpeg(cover_size, []),
            missing=no_ffmpeg,
        ),
    ]


def _cover_bytes(mp3: Path) -> bytes:
    from mutagen import id3

    tags: Any = cast(Any, id3).ID3(str(mp3))
    return cast(bytes, tags.getall("APIC")[0].data)


# --- running ----------------------------------------------------------------------------


def describe_outputs(out: Path) -> str:
    """What a system wrote, to check that all wrote the same sizes: "1024x576 40 KiB, ..."."""
    parts = []
    for path in sorted(out.iterdir(), key=lambda p: -int(p.stem)):
        with Image.open(path) as img:
            parts.append(f"{img.width}x{img.height} {path.suffix[1:]} {_kib(path)} KiB")
    return ", ".join(parts)


def _kib(path: Path) -> str:
    kib = path.stat().st_size / 1024
    return f"{kib:.1f}" if kib < 10 else f"{kib:.0f}"


def measure(
    case: Case, ours: OursProcess, reps: int, scratch: Path, log: Callable[[str], None]
) -> None:
    assert case.src is not None
    src = case.src
    systems: dict[str, Callable[[Path], float]] = {"ours": lambda out: ours.run(case.job, src, out)}
    if not case.missing:
        for name, commands in case.baselines.items():
            systems[name] = functools.partial(_run_baseline, commands, src)
            case.base[name] = []

    def once(name: str) -> float:
        out = scratch / f"{case.job}-{name.replace(' ', '').replace(',', '-')}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        cpu = systems[name](out)
        case.outputs[name] = describe_outputs(out)
        return cpu

    for name in systems:  # warm-up, untimed: libraries loaded, page cache filled
        once(name)
    for rep in range(reps):
        log(f"  {case.kind}: rep {rep + 1}/{reps}")
        for name in systems:
            cpu = once(name)
            (case.ours if name == "ours" else case.base[name]).append(cpu)


def _run_baseline(commands: Baseline, src: Path, out: Path) -> float:
    return run_commands(commands(src, out))


@contextlib.contextmanager
def scratch_dir(keep_inputs: bool) -> Iterator[tuple[Path, Path]]:
    """(inputs, outputs): smoke inputs are made afresh in /tmp, full ones cached."""
    root = Path(tempfile.mkdtemp(prefix="uploads-bench-media-"))
    try:
        yield (CACHE if keep_inputs else root / "inputs"), root / "out"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", nargs="?", choices=["serve"], help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, help="timed reps per system (default 3, smoke 1)")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one rep: seconds")
    parser.add_argument("--out", type=Path, help="the report (default bench/results/media.md)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve()
        return 0

    config = SMOKE if args.smoke else FULL
    reps = args.reps or config.reps
    config = Config(**{**config.__dict__, "reps": reps})
    default = RESULTS / "raw" / "smoke" / "media.md" if config.smoke else RESULTS / "media.md"
    out: Path = args.out or default
    command = shlex.join(["python", "-m", "bench.media", *(sys.argv[1:] if argv is None else argv)])

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    failed = False
    with scratch_dir(keep_inputs=not config.smoke) as (inputs_dir, scratch):
        log(f"inputs in {inputs_dir}: the first full run makes them, in a few minutes")
        inputs = make_inputs(config, inputs_dir)
        results = cases(config, inputs)
        ours = OursProcess()
        try:
            for case in results:
                if case.src is None:
                    continue
                try:
                    measure(case, ours, reps, scratch, log)
                except Exception as exc:  # one broken row must not cost the others
                    case.error = f"failed: {exc}"
                    failed = True
                    log(f"  {case.kind}: {case.error}")
        finally:
            ours.close()
    text = report(config, results, command, time.monotonic() - started)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    log(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
