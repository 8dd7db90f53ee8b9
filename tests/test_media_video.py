"""uploads_api.media.video on real videos that PyAV writes at test time (no binary fixtures,
no ffmpeg binary, no network)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import pytest
from PIL import Image, ImageStat

from uploads_api.media.formats import VIDEO_CONTAINERS
from uploads_api.media.images import Rendition
from uploads_api.media.video import (
    DEMUXERS,
    VideoError,
    make_video_thumbnails,
    read_video_metadata,
    rotation_of,
)

ALL = tuple(DEMUXERS)
MAX_PIXELS = 50_000_000
FPS, SECONDS, WIDTH, HEIGHT = 25, 2, 320, 240
FRAMES = FPS * SECONDS
# Frame i is grey at level i * STEP, so a poster's grey tells which frame it is.
STEP = 5
RED = (255, 0, 0)

_from_image = cast(Callable[[Image.Image], av.VideoFrame], av.VideoFrame.from_image)


@dataclass(frozen=True)
class Spec:
    """A video to write: ``rotation`` is the display matrix angle as PyAV takes it
    (counter-clockwise degrees); ``gop`` the keyframe interval."""

    codec: str = "libx264"
    fmt: str | None = None  # the muxer, when the file name's extension does not say
    audio: bool = False
    rotation: int | None = None
    gop: int | None = None
    options: tuple[tuple[str, str], ...] = ()


def paint(index: int) -> Image.Image:
    """Grey by frame index, with a red block in the stored picture's top-left corner."""
    img = Image.new("RGB", (WIDTH, HEIGHT), (index * STEP,) * 3)
    img.paste(RED, (0, 0, WIDTH // 4, HEIGHT // 4))
    return img


def write_video(path: Path, spec: Spec) -> Path:
    """Encode FRAMES frames of ``paint`` (and a second of silence per second, if audio)."""
    with av.open(str(path), "w", format=spec.fmt, options=dict(spec.options)) as out:
        stream = out.add_stream(spec.codec, rate=FPS)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if spec.gop is not None:
            stream.codec_context.gop_size = spec.gop
        if spec.rotation is not None:
            stream.set_display_rotation(spec.rotation)
        sound = out.add_stream("aac", rate=48_000) if spec.audio else None
        for index in range(FRAMES):
            out.mux(stream.encode(_from_image(paint(index))))
        out.mux(stream.encode())
        if sound is not None:
            write_silence(out, sound)
    return path


def write_silence(out: av.container.OutputContainer, sound: av.AudioStream) -> None:
    for start in range(0, 48_000 * SECONDS, 1024):
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        frame.planes[0].update(bytes(1024 * 4))
        frame.sample_rate, frame.pts = 48_000, start
        out.mux(sound.encode(frame))
    out.mux(sound.encode())


VIDEOS = {
    "audio.mp4": Spec(audio=True),
    "silent.mp4": Spec(),
    "clip.mov": Spec(),
    "clip.webm": Spec(codec="libvpx"),
    "clip.mkv": Spec(),
    "clip.avi": Spec(codec="mpeg4"),
    "clip.ts": Spec(fmt="mpegts"),
    # Keyframes every 5 frames, moov first, so a cut file still opens (see the fallback).
    "faststart.mp4": Spec(gop=5, options=(("movflags", "faststart"),)),
    "quarter.mp4": Spec(rotation=-90),  # the display matrix of a phone held upright
    "three.mp4": Spec(rotation=90),
    "half.mp4": Spec(rotation=180),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every video in VIDEOS, written once for the module (about 2 s)."""
    root = tmp_path_factory.mktemp("videos")
    made = {name: write_video(root / name, spec) for name, spec in VIDEOS.items()}
    with av.open(str(root / "song.m4a"), "w", format="mp4") as out:
        write_silence(out, out.add_stream("aac", rate=48_000))  # MP4 with nothing to see
    made["song.m4a"] = root / "song.m4a"
    return made


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def posters(
    src: Path,
    out_dir: Path,
    sizes: tuple[int, ...] = (1000,),
    allowed: Collection[str] = ALL,
    max_pixels: int = MAX_PIXELS,
) -> list[Rendition]:
    return make_video_thumbnails(str(src), str(out_dir), sizes, "png", allowed, max_pixels)


def opened(rendition: Rendition) -> Image.Image:
    with Image.open(rendition.path) as img:
        img.load()
    assert img.size == (rendition.thumbnail.width, rendition.thumbnail.height)
    return img


def frame_index(img: Image.Image) -> float:
    """Which frame the poster shows, from the grey of its bottom-right quarter."""
    w, h = img.size
    grey = ImageStat.Stat(img.crop((w // 2, h // 2, w, h)).convert("L")).mean[0]
    return grey / STEP


def is_red(pixel: Any) -> bool:
    r, g, b = pixel
    return bool(r > 200 and g < 60 and b < 60)


# --- metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec", "has_audio"),
    [
        ("audio.mp4", "h264", True),
        ("silent.mp4", "h264", False),
        ("clip.mov", "h264", False),
        ("clip.webm", "vp8", False),
        ("clip.mkv", "h264", False),
        ("clip.avi", "mpeg4", False),
    ],
)
def test_metadata(videos: dict[str, Path], name: str, codec: str, has_audio: bool) -> None:
    meta = read_video_metadata(str(videos[name]), ALL, MAX_PIXELS)
    assert set(meta) == {
        *("duration", "width", "height", "rotation"),
        *("fps", "codec", "bit_rate", "has_audio"),
    }
    assert meta["duration"] == pytest.approx(2.0, abs=0.1)
    assert meta["duration"] == round(meta["duration"], 2)
    assert (meta["width"], meta["height"], meta["rotation"]) == (WIDTH, HEIGHT, 0)
    assert meta["fps"] == 25.0
    assert meta["codec"] == codec
    assert isinstance(meta["bit_rate"], int) and meta["bit_rate"] > 0
    assert meta["has_audio"] is has_audio


@pytest.mark.parametrize(
    ("name", "rotation", "size"),
    [("quarter.mp4", 90, (HEIGHT, WIDTH)), ("three.mp4", 270, (HEIGHT, WIDTH)),
     ("half.mp4", 180, (WIDTH, HEIGHT))],
)  # fmt: skip
def test_metadata_is_as_displayed(
    videos: dict[str, Path], name: str, rotation: int, size: tuple[int, int]
) -> None:
    meta = read_video_metadata(str(videos[name]), ALL, MAX_PIXELS)
    assert meta["rotation"] == rotation
    assert (meta["width"], meta["height"]) == size


@pytest.mark.parametrize(
    ("angle", "clockwise"),
    [(0, 0), (-90, 90), (90, 270), (180, 180), (-180, 180), (-89.6, 90), (30, 0), (-50, 90)],
)
def test_rotation_of(angle: float, clockwise: int) -> None:
    assert rotation_of(angle) == clockwise


# --- posters ----------------------------------------------------------------------------


def test_poster_sizes_never_upscale(videos: dict[str, Path], out_dir: Path) -> None:
    made = posters(videos["silent.mp4"], out_dir, sizes=(160, 1000, 64))
    assert [r.thumbnail.size for r in made] == [160, 1000, 64]
    assert [opened(r).size for r in made] == [(160, 120), (320, 240), (64, 48)]
    assert all(Path(r.path).parent == out_dir for r in made)


def keyframes_of(path: Path) -> list[int]:
    """The frame numbers of the video's keyframes, from its packets."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            round(float(packet.pts * packet.time_base) * FPS)
            for packet in container.demux(stream)
            if packet.is_keyframe and packet.pts is not None and packet.time_base is not None
        ]


@pytest.mark.parametrize("name", ["silent.mp4", "audio.mp4", "clip.webm", "clip.avi"])
def test_poster_is_taken_a_tenth_in(videos: dict[str, Path], out_dir: Path, name: str) -> None:
    # 10% of 2 s is 0.2 s, frame 5: the poster is the first keyframe from there on (only
    # keyframes are decoded); with none before the end, frame 5 (or 6, should timestamps
    # round up), decoded the long way.
    later = [k for k in keyframes_of(videos[name]) if k >= 5]
    index = frame_index(opened(posters(videos[name], out_dir)[0]))
    if later:
        assert abs(index - later[0]) < 1, (index, later)
    else:
        assert 4.5 < index < 6.5


@pytest.mark.parametrize(
    ("name", "size", "red_at"),
    [
        ("silent.mp4", (320, 240), (0.1, 0.1)),
        ("quarter.mp4", (240, 320), (0.9, 0.1)),  # turned clockwise: top-left to top-right
        ("three.mp4", (240, 320), (0.1, 0.9)),
        ("half.mp4", (320, 240), (0.9, 0.9)),
    ],
)
def test_poster_is_upright(
    videos: dict[str, Path],
    out_dir: Path,
    name: str,
    size: tuple[int, int],
    red_at: tuple[float, float],
) -> None:
    img = opened(posters(videos[name], out_dir)[0])
    assert img.size == size
    assert is_red(img.getpixel((int(red_at[0] * size[0]), int(red_at[1] * size[1]))))


def test_poster_falls_back_to_the_start(
    videos: dict[str, Path], out_dir: Path, tmp_path: Path
) -> None:
    """The header says 2 s but the data stops after a few frames: seeking to 0.2 s (the
    keyframe at frame 5) finds nothing, so the poster is the first frame."""
    src = videos["faststart.mp4"]
    with av.open(str(src)) as container:
        keyframes = [
            packet.pos
            for packet in container.demux(container.streams.video[0])
            if packet.is_keyframe and packet.pts and packet.pts * packet.time_base >= Fraction(1, 5)
        ]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: keyframes[0]])
    assert read_video_metadata(str(cut), ALL, MAX_PIXELS)["duration"] == 2.0
    assert frame_index(opened(posters(cut, out_dir)[0])) < 1


# --- refusals ---------------------------------------------------------------------------


def _moov_at_end(path: Path) -> bytes:
    data = path.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")  # the muxer's default
    return data


@dataclass(frozen=True)
class Hostile:
    """An upload that must be refused, and words the refusal must say."""

    make: Callable[[dict[str, Path]], bytes]
    words: str
    allowed: Collection[str] = ALL
    max_pixels: int = MAX_PIXELS
    name: str = "upload.bin"


def _hls(videos: dict[str, Path]) -> bytes:
    # FFmpeg's HLS demuxer would open the file this names (tried by extension: .m3u8).
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{videos['clip.ts']}\n".encode()


HOSTILE = {
    "cut in half": Hostile(
        lambda v: _moov_at_end(v["silent.mp4"])[: v["silent.mp4"].stat().st_size // 2],
        "unreadable: Invalid data",
    ),
    "cut before moov": Hostile(
        lambda v: (d := _moov_at_end(v["silent.mp4"]))[: d.index(b"moov") - 4],
        "unreadable: Invalid data",
    ),
    "empty": Hostile(lambda v: b"", "unreadable"),
    "random": Hostile(lambda v: random.Random(0).randbytes(64 * 1024), "unreadable"),
    "mkv, only mp4 allowed": Hostile(
        lambda v: v["clip.mkv"].read_bytes(),
        "not a video in an accepted container (mp4)",
        allowed=("mp4",),
    ),
    "mpeg-ts": Hostile(lambda v: v["clip.ts"].read_bytes(), "accepted container"),
    "hls playlist": Hostile(_hls, "accepted container", name="upload.m3u8"),
    "concat list": Hostile(
        lambda v: f"ffconcat version 1.0\nfile '{v['silent.mp4']}'\n".encode(),
        "accepted container",
    ),
    "too many pixels": Hostile(
        lambda v: v["silent.mp4"].read_bytes(),
        "320x240 exceeds the limit of 1000 pixels",
        max_pixels=1000,
    ),
    "audio only": Hostile(lambda v: v["song.m4a"].read_bytes(), "no video stream"),
}


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("reader", ["metadata", "poster"])
def test_refused(
    videos: dict[str, Path], out_dir: Path, tmp_path: Path, case: str, reader: str
) -> None:
    hostile = HOSTILE[case]
    src = tmp_path / hostile.name
    src.write_bytes(hostile.make(videos))
    started = time.monotonic()
    with pytest.raises(VideoError) as caught:
        if reader == "metadata":
            read_video_metadata(str(src), hostile.allowed, hostile.max_pixels)
        else:
            posters(src, out_dir, allowed=hostile.allowed, max_pixels=hostile.max_pixels)
    assert time.monotonic() - started < 1
    message = str(caught.value)
    assert hostile.words in message
    assert str(tmp_path) not in message  # FFmpeg names the file; users need not see it
    assert os.listdir(out_dir) == []


def test_exactly_max_pixels_is_allowed(videos: dict[str, Path], out_dir: Path) -> None:
    assert read_video_metadata(str(videos["silent.mp4"]), ALL, WIDTH * HEIGHT)["width"] == 320
    assert posters(videos["silent.mp4"], out_dir, max_pixels=WIDTH * HEIGHT)


def test_a_missing_file_is_the_machines_problem(tmp_path: Path, out_dir: Path) -> None:
    """Not a VideoError: the task should retry, not mark the file as bad."""
    with pytest.raises(FileNotFoundError):
        read_video_metadata(str(tmp_path / "gone.mp4"), ALL, MAX_PIXELS)
    with pytest.raises(FileNotFoundError):
        posters(tmp_path / "gone.mp4", out_dir)


def test_unknown_container_names_are_a_settings_mistake(videos: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="unknown video containers"):
        read_video_metadata(str(videos["silent.mp4"]), ("mp4", "flv"), MAX_PIXELS)


def test_every_sniffed_container_has_a_demuxer() -> None:
    assert set(DEMUXERS) == set(VIDEO_CONTAINERS.values())


def test_the_server_never_loads_a_decoder_library() -> None:
    """The server imports the media modules for their errors; FFmpeg, mutagen and PDFium
    load only in pool workers (each would add megabytes to every server process)."""
    code = (
        "import sys, uploads_api.app, uploads_api.runtime\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'av', 'mutagen', 'pypdfium2'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
