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
import datetime as dt
import functools
import importlib.metadata
import io
import json
import math
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from PIL import Image, ImageDraw

from bench.measure import median
from bench.report import _command, _cpu_model, ratios, spread
from uploads_api.config import Settings
from uploads_api.media.images import fit_within
from uploads_api.media.outputs import OUTPUTS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Inputs take minutes to make (1,800 frames through x264): made once, git-ignored.
CACHE = RESULTS / "raw" / "media-inputs"
GENERATOR_VERSION = 1  # part of every cached name: bump it when a generator changes

# The server's defaults, read from its Settings so that the bench follows them.
_SETTINGS = Settings.model_fields
SIZES: tuple[int, ...] = tuple(_SETTINGS["thumbnail_sizes"].default)  # (256, 1024)
FORMAT: str = _SETTINGS["thumbnail_format"].default  # "webp"
MAX_PIXELS: int = _SETTINGS["max_image_pixels"].default  # 100_000_000
# ffmpeg writes webp as we do (quality 80, method 1). libwebp in ffmpeg calls the method
# compression_level and defaults it to 4: half as much again for the audio row's cover.
_WEBP = OUTPUTS["webp"].options
FFMPEG_WEBP = [
    "-c:v", "libwebp",
    "-quality", str(_WEBP["quality"]),
    "-compression_level", str(_WEBP["method"]),
]  # fmt: skip
FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
A4 = (595.0, 842.0)  # points: the PDF's pages


@dataclass(frozen=True)
class Config:
    reps: int
    video_size: tuple[int, int]
    video_seconds: int
    fps: int
    pdf_pages: int
    audio_seconds: int
    cover_size: int
    smoke: bool = False


FULL = Config(3, (1920, 1080), 60, 30, 20, 180, 1000)
SMOKE = Config(1, (320, 240), 3, 30, 3, 3, 300, smoke=True)


# --- inputs -----------------------------------------------------------------------------


def cached(path: Path, make: Callable[[Path], None]) -> Path:
    """``path``, made by ``make`` into a temporary name first, so that an interrupted run
    never leaves a half-written input that later runs would trust."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            make(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def make_video(path: Path, size: tuple[int, int], seconds: int, fps: int) -> None:
    """H.264 (libx264 defaults through PyAV: preset medium, CRF 23, keyframe at most every
    250 frames) with AAC silence, in mp4. The camera pans over a photo-like texture while
    four discs cross it, and every frame gets fresh sensor-like noise, so that no frame is
    a cheap copy of the last: about 5 Mbit/s at 1080p, as a phone or a web export."""
    import av

    width, height = size
    pan = (width // 8, height // 8)
    texture_size = (width + pan[0], height + pan[1])
    ramp = Image.linear_gradient("L").resize(texture_size)
    across = Image.linear_gradient("L").rotate(90).resize(texture_size)
    base = Image.merge("RGB", (ramp, across, Image.new("L", texture_size, 96)))
    texture = Image.blend(base, Image.effect_noise(texture_size, 40).convert("RGB"), 0.3)
    # A few noise frames in turn: fresh enough for the encoder, cheap enough to make.
    grain = [Image.effect_noise(size, 60).convert("RGB") for _ in range(5)]
    with av.open(str(path), "w", format="mp4") as container:
        stream = cast(Any, container.add_stream("libx264", rate=fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        sound = cast(Any, container.add_stream("aac", rate=44100))
        for i in range(seconds * fps):
            t = i / fps
            x = round((0.5 - 0.5 * math.cos(t * 0.7)) * pan[0])
            y = round((0.5 - 0.5 * math.cos(t * 0.45)) * pan[1])
            picture = texture.crop((x, y, x + width, y + height))
            draw = ImageDraw.Draw(picture)
            for k in range(4):
                cx = width / 2 + width * 0.35 * math.sin(t * (0.9 + 0.3 * k) + k)
                cy = height / 2 + height * 0.35 * math.cos(t * (1.1 + 0.2 * k) + 2 * k)
                r = height * (0.06 + 0.03 * k)
                draw.ellipse(
                    (cx - r, cy - r, cx + r, cy + r), fill=(40 * k + 60, 200 - 40 * k, 120)
                )
            picture = Image.blend(picture, grain[i % len(grain)], 0.06)
            frame = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        _encode_audio(container, sound, seconds, silent=True)


def make_pdf(path: Path, pages: int) -> None:
    """A4 pages as a report reads: a heading, a filled panel, a bar chart, a curve and some
    thirty lines of text in the standard Helvetica (not embedded, as most office exports
    leave it), deflated."""
    from pypdf import PdfWriter
    from pypdf.generic import ContentStream, DictionaryObject, NameObject

    words = ["preview", "upload", "server", "thumbnail", "render", "page", "chart"]
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    writer = PdfWriter()
    for number in range(1, pages + 1):
        page = writer.add_blank_page(width=A4[0], height=A4[1])
        ops = [f"BT /F1 22 Tf 56 780 Td (Quarterly report, page {number}) Tj ET"]
        ops.append("0.93 0.95 1 rg 56 560 483 190 re f 0.2 0.3 0.6 RG 1 w 56 560 483 190 re S")
        for bar in range(12):
            height = 20 + (bar * 37 + number * 11) % 150
            shade = 0.3 + bar / 24
            ops.append(f"{shade:.2f} 0.4 0.7 rg {72 + bar * 38} 575 26 {height} re f")
        ops.append("0.8 0.1 0.1 RG 2 w 72 600 m 200 740 330 560 520 700 c S")
        ops.append("0 g BT /F1 10 Tf 56 530 Td 14 TL")
        for line in range(33):
            text = " ".join(words[(line * 3 + i + number) % len(words)] for i in range(14))
            ops.append(f"({text.capitalize()}.) '")
        ops.append("ET")
        content = ContentStream(None, writer)
        content.set_data("\n".join(ops).encode("ascii"))
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        page.replace_contents(content)
        page.compress_content_streams()
    with path.open("wb") as fp:
        writer.write(fp)


def make_mp3(path: Path, seconds: int, cover_size: int) -> None:
    """A 192 kbit/s stereo mp3 (LAME through PyAV) of two tones, tagged with mutagen as a
    shop's download is: title, artist, album, track, year, genre and a photo-like JPEG
    front cover of ``cover_size`` px square (quality 90)."""
    import av
    from mutagen import id3 as mutagen_id3

    with av.open(str(path), "w", format="mp3") as container:
        stream = cast(Any, container.add_stream("libmp3lame", rate=44100))
        stream.bit_rate = 192_000
        _encode_audio(container, stream, seconds, silent=False)
    cover = io.BytesIO()
    size = (cover_size, cover_size)
    noise = Image.effect_noise(size, 24).convert("RGB")
    photo = Image.blend(Image.linear_gradient("L").resize(size).convert("RGB"), noise, 0.25)
    photo.save(cover, "JPEG", quality=90)
    id3: Any = mutagen_id3  # mutagen leaves most of its API untyped
    tags = id3.ID3()
    tags.add(id3.TIT2(encoding=3, text="Benchmark Song"))
    tags.add(id3.TPE1(encoding=3, text="Benchmark Artist"))
    tags.add(id3.TALB(encoding=3, text="Benchmark Album"))
    tags.add(id3.TRCK(encoding=3, text="3/12"))
    tags.add(id3.TDRC(encoding=3, text="2024"))
    tags.add(id3.TCON(encoding=3, text="Electronic"))
    tags.add(id3.APIC(encoding=3, mime="image/jpeg", type=3, desc="", data=cover.getvalue()))
    tags.save(str(path))


def _encode_audio(container: Any, stream: Any, seconds: int, *, silent: bool) -> None:
    import av

    context = stream.codec_context
    rate, samples = context.sample_rate, context.frame_size or 1024
    channels = context.layout.nb_channels
    # One second of a chord in the encoder's planar float format, played on repeat.
    tone = b"".join(
        struct.pack("<f", 0.0 if silent else 0.2 * math.sin(2 * math.pi * 440 * n / rate)
                    + 0.1 * math.sin(2 * math.pi * 659.25 * n / rate))
        for n in range(rate)
    )  # fmt: skip
    for index in range(seconds * rate // samples + 1):
        frame = av.AudioFrame(
            format=context.format.name, layout=context.layout.name, samples=samples
        )
        frame.sample_rate = rate
        frame.pts = index * samples
        start = (index * samples % rate) * 4
        chunk = (tone * 2)[start : start + samples * 4]
        for plane in frame.planes[:channels]:
            plane.update(chunk.ljust(plane.buffer_size, b"\0"))
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


@dataclass(frozen=True)
class Inputs:
    video: Path
    pdf: Path | None
    mp3: Path
    pdf_error: str = ""


def make_inputs(config: Config, directory: Path) -> Inputs:
    w, h = config.video_size
    v = GENERATOR_VERSION
    video = cached(
        directory / f"video-{w}x{h}-{config.video_seconds}s-{config.fps}fps-v{v}.mp4",
        lambda p: make_video(p, config.video_size, config.video_seconds, config.fps),
    )
    mp3 = cached(
        directory / f"audio-{config.audio_seconds}s-cover{config.cover_size}-v{v}.mp3",
        lambda p: make_mp3(p, config.audio_seconds, config.cover_size),
    )
    try:
        pdf: Path | None = cached(
            directory / f"doc-{config.pdf_pages}pages-v{v}.pdf",
            lambda p: make_pdf(p, config.pdf_pages),
        )
        error = ""
    except ImportError:  # pypdf comes with '.[test]', not '.[bench]'
        pdf, error = None, "pypdf is not installed (pip install -e '.[test]')"
    return Inputs(video, pdf, mp3, error)


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


# --- baselines: commands, timed by the kernel's account of the child --------------------


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


# --- the cases --------------------------------------------------------------------------

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


# --- the report -------------------------------------------------------------------------


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
