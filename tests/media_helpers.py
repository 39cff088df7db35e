"""Media made on the fly with the real ffmpeg binary, for the media tests (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.media.ffmpeg import run_ffmpeg

AUDIO_CODECS = {
    ".wav": ["-c:a", "pcm_s16le"],
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "96k"],
    ".ogg": ["-c:a", "libvorbis"],
    ".flac": ["-c:a", "flac"],
    ".m4a": ["-c:a", "aac", "-b:a", "96k"],
}


def make_audio(
    path: Path,
    duration: float = 1.0,
    rate: int = 44_100,
    channels: int = 1,
    kind: str = "sine",
    volume_db: float = -20.0,
) -> Path:
    """A sine or pink-noise clip of `duration` seconds in the format given by the suffix of `path`."""
    source = (
        f"sine=frequency=440:sample_rate={rate}:duration={duration}"
        if kind == "sine"
        else f"anoisesrc=color=pink:seed=7:sample_rate={rate}:duration={duration}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        ["-f", "lavfi", "-i", source, "-af", f"volume={volume_db}dB", "-ac", str(channels), "-ar", str(rate)]
        + [*AUDIO_CODECS[path.suffix], "-y", str(path)],
        what="make test audio",
    )
    return path


def level_frames(n: int, size: tuple[int, int]) -> np.ndarray:
    """n frames whose grey level encodes their index (3 levels apart: survives near-lossless coding)."""
    w, h = size
    if n > 70:
        raise ValueError("level_frames encodes at most 70 distinct frames")
    levels = np.arange(n) * 3 + 16
    return np.broadcast_to(levels[:, None, None, None].astype(np.uint8), (n, h, w, 3)).copy()


def frame_level(frame: np.ndarray) -> int:
    """The index encoded by level_frames, read back from a (possibly lossy) frame."""
    return int(round((float(frame.mean()) - 16) / 3))


def make_video(
    path: Path,
    frames: np.ndarray,
    fps: str = "25",
    setpts: str | None = None,
    rotation: int | None = None,
    codec: list[str] | None = None,
) -> Path:
    """Encode `frames` (n, h, w, 3) with the ffmpeg binary; `setpts` rewrites timestamps (variable frame rate)."""
    n, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv444p"]
    # settb first: setpts results are rounded to the link time base, 1/fps unless made finer
    filters = ["-vf", f"settb=1/1000,setpts={setpts}", "-fps_mode", "passthrough"] if setpts else []
    target = path if rotation is None else path.with_name("unrotated_" + path.name)
    run_ffmpeg(
        ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", fps, "-i", "pipe:0"]
        + [*filters, *codec, "-y", str(target)],
        what="make test video",
        input=np.ascontiguousarray(frames).tobytes(),
    )
    if rotation is not None:
        # -display_rotation sets the display matrix the way phones do, without touching the pixels.
        run_ffmpeg(
            ["-display_rotation", str(rotation), "-i", str(target), "-c", "copy", "-y", str(path)],
            what="rotate test video",
        )
        target.unlink()
    return path


def quadrant_frames(n: int, size: tuple[int, int]) -> np.ndarray:
    """Frames with a red top-left quadrant on blue, so any rotation or flip is visible."""
    w, h = size
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[..., 2] = 200
    frames[:, : h // 2, : w // 2] = (220, 30, 30)
    return frames
