"""What is inside a media file, read with PyAV (the bundled ffmpeg has no ffprobe)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import InputError


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format_name: str
    duration: float  # container duration in seconds
    has_video: bool
    has_audio: bool
    # video (None when there is no video stream)
    width: int | None = None  # as displayed, i.e. after rotation
    height: int | None = None
    coded_width: int | None = None
    coded_height: int | None = None
    rotation: int = 0  # degrees counter-clockwise to apply for display (0, 90, 180, 270)
    fps: float | None = None  # average frame rate
    video_codec: str | None = None
    pixel_format: str | None = None
    video_frames: int | None = None  # from the container's index, when it has one
    video_duration: float | None = None
    # audio (None when there is no audio stream)
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    audio_duration: float | None = None


def _stream_duration(stream) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def first_frame_rotation(container, stream) -> int:
    """Display rotation (degrees counter-clockwise, normalised to 0/90/180/270) from the first decoded frame.

    PyAV exposes the display matrix on frames, not on streams, so one frame is decoded.
    """
    for frame in container.decode(stream):
        return normalise_rotation(frame.rotation)
    return 0


def normalise_rotation(degrees: float | int | None) -> int:
    if not degrees:
        return 0
    return int(round(degrees / 90.0)) % 4 * 90


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read streams and timing of `path`; InputError if it is missing or not a media file."""
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, f"media file {path.name!r} not found")
    try:
        container = av.open(os.fspath(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(path, None, f"{path.name!r} is not a readable media file ({exc})") from None
    with container:
        info: dict = {
            "path": path,
            "format_name": container.format.name,
            "duration": (container.duration or 0) / 1_000_000,
            "has_video": bool(container.streams.video),
            "has_audio": bool(container.streams.audio),
        }
        if container.streams.audio:
            a = container.streams.audio[0]
            info.update(
                audio_codec=a.codec_context.name,
                sample_rate=a.codec_context.sample_rate,
                channels=a.codec_context.channels,
                audio_duration=_stream_duration(a),
            )
        if container.streams.video:
            v = container.streams.video[0]
            cc = v.codec_context
            rate = v.average_rate or v.guessed_rate
            info.update(
                coded_width=cc.width,
                coded_height=cc.height,
                fps=float(rate) if rate else None,
                video_codec=cc.name,
                pixel_format=cc.pix_fmt,
                video_frames=v.frames or None,
                video_duration=_stream_duration(v),
            )
            try:
                rotation = first_frame_rotation(container, v)
            except av.FFmpegError:
                rotation = 0
            swap = rotation in (90, 270)
            info.update(
                rotation=rotation,
                width=cc.height if swap else cc.width,
                height=cc.width if swap else cc.height,
            )
    return MediaInfo(**info)


def top_level_boxes(path: str | os.PathLike) -> list[str]:
    """Types of the top-level boxes of an MP4/MOV file in file order (e.g. ftyp, moov, mdat)."""
    boxes: list[str] = []
    with open(path, "rb") as f:
        size_total = os.fstat(f.fileno()).st_size
        offset = 0
        while offset + 8 <= size_total:
            f.seek(offset)
            size, kind = struct.unpack(">I4s", f.read(8))
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
            elif size == 0:
                size = size_total - offset
            if size < 8:
                break
            boxes.append(kind.decode("latin-1"))
            offset += size
    return boxes


def is_faststart(path: str | os.PathLike) -> bool:
    """True when the `moov` index comes before the media data, so players can start before the download ends."""
    boxes = top_level_boxes(path)
    return "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")
