"""Real video, audio and PDF inputs made at test time with PyAV, mutagen and pypdf: each
function writes one file into ``dir`` and returns its path. Nothing is downloaded."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, cast

import av
from mutagen import id3 as mutagen_id3
from PIL import Image
from pypdf import PdfWriter


def video(
    dir: Path,
    name: str = "clip.mp4",
    *,
    size: tuple[int, int] = (320, 240),
    seconds: float = 2.0,
    fps: int = 25,
    audio: bool = True,
    codec: str = "libx264",
) -> Path:
    """A clip whose frame ``i`` is filled with grey level ``i * 255 // frames``, so the
    frame a poster was taken from can be told by its colour."""
    dir.mkdir(parents=True, exist_ok=True)
    path = dir / name
    frames = int(seconds * fps)
    with av.open(str(path), "w") as container:
        stream = cast(av.VideoStream, container.add_stream(codec, rate=fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=44100) if audio else None
        for i in range(frames):
            level = i * 255 // max(1, frames - 1)
            picture = Image.new("RGB", size, (level, level, level))
            frame = cast(av.VideoFrame, av.VideoFrame.from_image(picture))  # type: ignore[no-untyped-call]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _silence(container, sound, seconds)
    return path


def _silence(
    container: av.container.OutputContainer, stream: av.AudioStream, seconds: float
) -> None:
    context = stream.codec_context
    samples = context.frame_size or 1024
    for _ in range(int(seconds * context.sample_rate / samples) + 1):
        frame = av.AudioFrame(
            format=context.format.name, layout=context.layout.name, samples=samples
        )
        frame.sample_rate = context.sample_rate
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def mp3(dir: Path, name: str = "song.mp3", *, seconds: float = 2.0, cover: bool = True) -> Path:
    """Silence with ID3 tags (title, artist, album, track) and, with ``cover``, a red
    600 px front cover."""
    dir.mkdir(parents=True, exist_ok=True)
    path = dir / name
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=44100)
        _silence(container, stream, seconds)
    id3: Any = mutagen_id3  # mutagen has no type hints
    tags = id3.ID3()
    tags.add(id3.TIT2(encoding=3, text="Test Song"))
    tags.add(id3.TPE1(encoding=3, text="Test Artist"))
    tags.add(id3.TALB(encoding=3, text="Test Album"))
    tags.add(id3.TRCK(encoding=3, text="3/12"))
    if cover:
        art = io.BytesIO()
        Image.new("RGB", (600, 600), (200, 20, 20)).save(art, "JPEG")
        picture = id3.APIC(encoding=3, mime="image/jpeg", type=3, desc="cover", data=art.getvalue())
        tags.add(picture)
    tags.save(str(path))
    return path


def pdf(
    dir: Path, name: str = "doc.pdf", *, pages: int = 2, size: tuple[float, float] = (595, 842)
) -> Path:
    """Blank pages of ``size`` points, with a title and an author."""
    dir.mkdir(parents=True, exist_ok=True)
    path = dir / name
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=size[0], height=size[1])
    writer.add_metadata({"/Title": "Test Document", "/Author": "Test Author"})
    with path.open("wb") as fp:
        writer.write(fp)
    return path
