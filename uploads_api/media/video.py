"""Video work with PyAV (FFmpeg): header facts and a poster frame made into thumbnails.

Runs in the pool's worker processes only (see the package docstring), on untrusted bytes.

Rotation: PyAV (18.1) reads the display matrix only from decoded frames
(``VideoFrame.rotation``, from the DISPLAYMATRIX side data FFmpeg copies onto each frame
from the stream); it has no stream-level reader, and FFmpeg 7+ no longer sets a "rotate"
tag in ``stream.metadata``. So the metadata decodes one frame. Flips in the matrix are
ignored, and so is a non-square sample aspect ratio: pictures keep their stored pixels.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from PIL import Image

from uploads_api.media.errors import DECODE_ERRORS, detail
from uploads_api.media.images import Rendition, thumbnails_from

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream


class VideoError(Exception):
    """The file cannot be read as a video: corrupt, truncated, too large, without a video
    stream or in a refused container. Retrying will not help; ``str(exc)`` is readable."""


# Container name (``formats.VIDEO_CONTAINERS``, ``UPLOADS_VIDEO_FORMATS``) -> the FFmpeg
# demuxer that reads it, which ``container.format.name`` names. FFmpeg has one demuxer per
# family, so allowing "mp4" lets in all that demuxer reads (MOV, 3GP, M4A) and "webm" all
# of Matroska: telling the members apart is the sniffer's job, before us.
DEMUXERS = {
    "mp4": "mov,mp4,m4a,3gp,3g2,mj2",
    "mov": "mov,mp4,m4a,3gp,3g2,mj2",
    "webm": "matroska,webm",
    "mkv": "matroska,webm",
    "avi": "avi",
}

POSTER_AT = 0.1  # the poster is the first frame at or after 10% of the duration
# Packets demuxed (and decoded) at most per search for a frame. Bounds the work a file with
# sparse keyframes, or with packets that never yield a frame, can ask of us.
MAX_PACKETS = 300

# Clockwise quarter turns that stand a stored picture upright.
_UPRIGHT = {
    90: Image.Transpose.ROTATE_270,  # Pillow's angles are counter-clockwise
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


def read_video_metadata(
    src: str, allowed_containers: Collection[str], max_pixels: int
) -> dict[str, Any]:
    """Header facts about a video, decoding only its first frame (for the rotation).

    ``width`` and ``height`` are as displayed (swapped for a quarter turn); ``rotation``
    is the clockwise turn, 0/90/180/270, that stands the stored picture upright;
    ``bit_rate`` is the whole file's, in bits per second. Raises ``VideoError``.
    """
    _check_names(allowed_containers)
    with _video_errors(), _open(src, allowed_containers) as container:
        stream = _video_stream(container, max_pixels)
        frame = _frame_from(container, stream, None, max_pixels)
        if frame is None:
            raise VideoError("video has no decodable frame")
        rotation = rotation_of(frame.rotation)
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate
        return {
            "duration": _seconds(container.duration),
            "width": width,
            "height": height,
            "rotation": rotation,
            "fps": round(float(rate), 2) if rate else None,
            "codec": stream.codec_context.name,
            "bit_rate": container.bit_rate or None,
            "has_audio": bool(container.streams.audio),
        }


def make_video_thumbnails(
    src: str,
    out_dir: str,
    sizes: Sequence[int],
    fmt: str,
    allowed_containers: Collection[str],
    max_pixels: int,
) -> list[Rendition]:
    """Write one thumbnail per size of the poster frame, upright, as ``thumbnails_from``.

    The poster is the first keyframe at or after 10% of the duration: only keyframes are
    decoded on the way, so it costs a decode or two rather than every frame since the
    previous keyframe (a 1080p clip: 0.25 s of CPU instead of 1.4 s). With no keyframe
    within ``MAX_PACKETS`` of that point, it is the first frame at or after it, decoded
    the long way. The duration comes from the header, which may lie: when seeking there
    yields no frame, the poster is the first frame instead. Raises ``VideoError`` for a
    bad file, ``ValueError`` as ``make_thumbnails`` does.
    """
    _check_names(allowed_containers)
    with _video_errors():
        poster = _poster(src, allowed_containers, max_pixels, seek=True, keyframes=True)
        if poster is None:
            poster = _poster(src, allowed_containers, max_pixels, seek=True)
        if poster is None:
            poster = _poster(src, allowed_containers, max_pixels, seek=False)
        if poster is None:
            raise VideoError("video has no decodable frame")
    return thumbnails_from(poster, out_dir, sizes, fmt)


def rotation_of(display_angle: float) -> int:
    """The clockwise turn (0/90/180/270) that stands a picture upright, from the display
    matrix's angle as PyAV's ``VideoFrame.rotation`` gives it (counter-clockwise degrees,
    -180 to 180). Any other angle is rounded to the nearest quarter turn."""
    return round(-display_angle / 90) % 4 * 90


# --- decoding ---------------------------------------------------------------------------


@contextlib.contextmanager
def _video_errors() -> Iterator[None]:
    """Translate what PyAV raises on a bad file into ``VideoError``, minus the scratch path."""
    import av

    try:
        yield
    except VideoError:
        raise
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # the machine's problem, not the file's: let the task retry
    except av.FFmpegError as exc:
        raise VideoError(f"video is unreadable: {exc.strerror or detail(exc)}") from exc
    except MemoryError as exc:
        raise VideoError("video needs too much memory to decode") from exc
    except DECODE_ERRORS as exc:
        raise VideoError(f"video is unreadable: {detail(exc)}") from exc


def _check_names(allowed_containers: Collection[str]) -> None:
    """A container name we do not know is a mistake in the settings: ``ValueError``."""
    unknown = sorted(set(allowed_containers) - DEMUXERS.keys())
    if unknown:
        raise ValueError(f"unknown video containers {unknown}; known: {sorted(DEMUXERS)}")


@contextlib.contextmanager
def _open(src: str, allowed_containers: Collection[str]) -> Iterator[InputContainer]:
    """Open ``src`` with only the allowed demuxers and only the local-file protocol.

    FFmpeg picks a demuxer by probing the bytes; the whitelist makes it refuse any other
    before that demuxer reads a header. That matters: playlist demuxers (HLS, concat) open
    further files or URLs named inside the upload.
    """
    import av

    demuxers = {DEMUXERS[name] for name in allowed_containers}
    options = {"format_whitelist": ",".join(sorted(demuxers)), "protocol_whitelist": "file"}
    try:
        container = av.open(src, "r", options=options)
    except av.error.ArgumentError as exc:  # FFmpeg's answer to a demuxer off the whitelist
        accepted = ", ".join(sorted(allowed_containers)) or "none"
        raise VideoError(f"file is not a video in an accepted container ({accepted})") from exc
    with container:
        if container.format.name not in demuxers:  # should FFmpeg ever ignore the option
            raise VideoError(f"video container {container.format.name} is not accepted")
        yield container


def _video_stream(container: InputContainer, max_pixels: int) -> VideoStream:
    """The first real video stream (not a cover picture), refused if too large."""
    import av

    for stream in container.streams.video:
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        if stream.codec_context is None:  # PyAV's sign that FFmpeg has no decoder for it
            raise VideoError("video codec is not supported")
        _check_size(stream.codec_context.width, stream.codec_context.height, max_pixels)
        # The decoder refuses larger frames too, should the size change mid-stream.
        limit = min(max_pixels, 2**31 - 1)  # an int option in FFmpeg
        stream.codec_context.options = {"max_pixels": str(limit)}
        stream.codec_context.thread_type = "AUTO"
        return stream
    raise VideoError("file has no video stream")


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        limit = f"the limit of {max_pixels} pixels"
        raise VideoError(f"video frame is too large: {width}x{height} exceeds {limit}")


def _poster(
    src: str,
    allowed_containers: Collection[str],
    max_pixels: int,
    *,
    seek: bool,
    keyframes: bool = False,
) -> Image.Image | None:
    """The upright poster as a Pillow image; ``None`` if no frame decodes (with
    ``keyframes``: if no keyframe at or after the target is near). Opens the file afresh
    each time: a failed seek can leave a demuxer anywhere."""
    import av

    with _open(src, allowed_containers) as container:
        stream = _video_stream(container, max_pixels)
        duration = _seconds(container.duration)
        if keyframes and not duration:
            return None
        if seek and duration:
            # Times count from the container's start, which need not be 0 (MPEG-TS).
            target = (container.start_time or 0) / av.time_base + POSTER_AT * duration
            try:
                # To the keyframe at or before the target (backward=True, the default).
                container.seek(round(target * av.time_base))
                if keyframes:
                    frame = _keyframe_after(container, stream, target, max_pixels)
                else:
                    frame = _frame_from(container, stream, target, max_pixels)
            except av.FFmpegError:
                return None  # the index points past the data, say: try from the start
        else:
            frame = _frame_from(container, stream, None, max_pixels)
        if frame is None:
            return None
        # PyAV's stub leaves to_image untyped; it returns an RGB Pillow image.
        image = cast(Callable[[], Image.Image], frame.to_image)()
        transpose = _UPRIGHT.get(rotation_of(frame.rotation))
        return image.transpose(transpose) if transpose is not None else image


def _keyframe_after(
    container: InputContainer, stream: VideoStream, target: float, max_pixels: int
) -> VideoFrame | None:
    """The first keyframe at or after ``target`` seconds within ``MAX_PACKETS`` packets,
    found by the packets' timestamps and decoded alone; ``None`` if there is none."""
    for packet in itertools.islice(container.demux(stream), MAX_PACKETS):
        if not packet.is_keyframe or packet.pts is None or packet.time_base is None:
            continue
        if float(packet.pts * packet.time_base) < target:
            continue
        # A decoder may hold a frame back (reordering): flushing hands it over.
        frames = [*packet.decode(), *stream.codec_context.decode(None)]
        for frame in frames:
            _check_size(frame.width, frame.height, max_pixels)
            return frame
        return None
    return None


def _frame_from(
    container: InputContainer, stream: VideoStream, target: float | None, max_pixels: int
) -> VideoFrame | None:
    """The first frame at or after ``target`` seconds (any frame if ``None``), reading at
    most ``MAX_PACKETS`` packets: past that, the last frame decoded. ``None`` if no frame
    decodes at all."""
    last = None
    for packet in itertools.islice(container.demux(stream), MAX_PACKETS):
        for frame in packet.decode():
            _check_size(frame.width, frame.height, max_pixels)
            if target is None or frame.pts is None or frame.time >= target:
                return frame
            last = frame
    return last


def _seconds(microseconds: int | None) -> float | None:
    """FFmpeg's AV_TIME_BASE units as seconds; ``None`` when unknown (or nonsense)."""
    if microseconds is None or microseconds <= 0:
        return None
    return round(microseconds / 1_000_000, 2)
