"""Audio files made at test time for the audio tests: a 2 s, 440 Hz sine encoded and muxed
by PyAV in each container the tests cover, then tagged with mutagen the way each format keeps
its tags and cover art; and a cover image in a given colour and format."""

from __future__ import annotations

import base64
import io
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import mutagen
import mutagen.flac
import mutagen.id3
import mutagen.mp4
from av.audio.stream import AudioStream
from PIL import Image

# mutagen ships py.typed but leaves its constructors and methods untyped.
id3: Any = mutagen.id3
mp4: Any = mutagen.mp4
flac: Any = mutagen.flac

RED, BLUE = (255, 0, 0), (0, 0, 255)


@dataclass(frozen=True)
class Kind:
    """One container as encoded here, and a pattern of the bytes it starts with (what
    content sniffing sees)."""

    muxer: str
    codec: str
    rate: int
    channels: int
    magic: bytes
    has_bit_rate: bool = True
    options: dict[str, str] = field(default_factory=dict)


KINDS = {
    "mp3": Kind("mp3", "libmp3lame", 44100, 2, rb"ID3\x04"),  # ffmpeg writes ID3v2.4 first
    "flac": Kind("flac", "flac", 44100, 2, rb"fLaC"),
    # ffmpeg's own Vorbis encoder (no libvorbis here) writes no nominal bit rate.
    "ogg": Kind(
        "ogg", "vorbis", 44100, 2, rb"OggS", has_bit_rate=False, options={"strict": "experimental"}
    ),
    "opus": Kind("opus", "libopus", 48000, 2, rb"OggS"),
    "m4a": Kind("ipod", "aac", 44100, 2, rb"....ftypM4A "),
    "wav": Kind("wav", "pcm_s16le", 44100, 1, rb"RIFF....WAVE"),
}


def encode(path: Path, kind: Kind, *, muxer_options: dict[str, str] | None = None) -> Path:
    """A 2 s, 440 Hz sine at ``kind.rate``, encoded and muxed by PyAV."""
    layout = "stereo" if kind.channels == 2 else "mono"
    with av.open(str(path), "w", format=kind.muxer, options=muxer_options or {}) as out:
        stream = cast(AudioStream, out.add_stream(kind.codec, rate=kind.rate, layout=layout))
        stream.codec_context.options = kind.options
        fmt = stream.codec_context.format
        step = stream.codec_context.frame_size or 1024
        total = 2 * kind.rate
        for start in range(0, total, step):
            count = min(step, total - start)
            wave = [
                0.3 * math.sin(2 * math.pi * 440 * (start + i) / kind.rate) for i in range(count)
            ]
            frame = av.AudioFrame(format=fmt.name, layout=layout, samples=count)
            if fmt.is_planar:
                for plane in frame.planes:
                    plane.update(_pcm(fmt.name, wave))
            else:
                plane_data = [v for v in wave for _ in range(kind.channels)]
                frame.planes[0].update(_pcm(fmt.name, plane_data))
            frame.sample_rate, frame.pts = kind.rate, start
            frame.time_base = Fraction(1, kind.rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _pcm(fmt: str, samples: list[float]) -> bytes:
    if fmt.startswith("s16"):
        return struct.pack(f"<{len(samples)}h", *(round(v * 32767) for v in samples))
    if fmt.startswith("s32"):
        return struct.pack(f"<{len(samples)}i", *(round(v * 2147483647) for v in samples))
    return struct.pack(f"<{len(samples)}f", *samples)


def image_bytes(colour: tuple[int, int, int] = RED, fmt: str = "PNG", side: int = 600) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(out, fmt)
    return out.getvalue()


def tag(path: Path, tags: dict[str, str], covers: Sequence[tuple[int, bytes]] = ()) -> Path:
    """Write ``tags`` (our names) and ``covers`` ((picture type, bytes)) the way each
    format keeps them: ID3 frames, Vorbis comments, MP4 atoms."""
    audio: Any = mutagen.File(path)
    if audio.tags is None:
        audio.add_tags()
    if isinstance(audio.tags, id3.ID3):
        frames = {"title": "TIT2", "artist": "TPE1", "album": "TALB", "track": "TRCK"}
        frames |= {"date": "TDRC", "genre": "TCON"}
        for name, value in tags.items():
            audio.tags.add(getattr(id3, frames[name])(encoding=3, text=[value]))
        for kind, data in covers:
            picture = id3.APIC(encoding=3, mime="image/png", type=kind, desc=str(kind), data=data)
            audio.tags.add(picture)
    elif type(audio).__name__ == "MP4":
        atoms = {"title": "©nam", "artist": "©ART", "album": "©alb"}
        atoms |= {"date": "©day", "genre": "©gen"}
        for name, value in tags.items():
            if name == "track":
                number, total = value.split("/")
                audio.tags["trkn"] = [(int(number), int(total))]
            else:
                audio.tags[atoms[name]] = [value]
        if covers:
            png = mp4.MP4Cover.FORMAT_PNG
            audio.tags["covr"] = [mp4.MP4Cover(data, png) for _, data in covers]
    else:  # Vorbis comments: FLAC, Ogg Vorbis, Ogg Opus
        for name, value in tags.items():
            audio.tags["tracknumber" if name == "track" else name] = [value]
        pictures = [_flac_picture(kind, data) for kind, data in covers]
        if hasattr(audio, "add_picture"):
            for picture in pictures:
                audio.add_picture(picture)
        elif pictures:
            blocks = [base64.b64encode(p.write()).decode("ascii") for p in pictures]
            audio.tags["metadata_block_picture"] = blocks
    audio.save()
    return path


def _flac_picture(kind: int, data: bytes) -> Any:
    picture = flac.Picture()
    picture.type, picture.mime, picture.data = kind, "image/png", data
    return picture
