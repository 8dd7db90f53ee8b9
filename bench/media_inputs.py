"""The benchmark's inputs: a video, a PDF and an mp3 with a cover, made to look like what
users upload. They take minutes to make, so each is made once under a name that says how
it was made, and later runs reuse it. Kept apart from ``bench.media`` so that the timing
code reads on its own.
"""

from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from PIL import Image, ImageDraw

GENERATOR_VERSION = 1  # part of every cached name: bump it when a generator changes
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
