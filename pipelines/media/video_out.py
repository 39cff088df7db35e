"""Frames out: lossless chunk checkpoints (stage A) and the one final H.264/AAC encode (stage B).

Stage A writes frames, as they come, into lossless chunk files of `chunk_frames` frames each. A chunk is
encoded under a temporary name and renamed into place only after its ffmpeg exited cleanly, so whatever
kills the process (SIGKILL included), the files named `chunk_<first>_<count>.mkv` are complete, and
`completed_frames()` is where a resumed render starts. Stage B streams those frames back, through the
compositor, into a single final encode with the audio track cut to exactly n_frames / fps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipelines.errors import InputError, RenderError
from pipelines.media.atomic import move_into_place, pid_alive, pid_of_temp, temp_path_for
from pipelines.media.audio import OUTPUT_RATE, sample_count
from pipelines.media.ffmpeg import FFmpegPipe

DEFAULT_CHUNK_FRAMES = 100
_CHUNK_RE = re.compile(r"^chunk_(\d{8})_(\d{6})\.mkv$")
# libx264rgb at -qp 0 is mathematically lossless on RGB24 (no chroma subsampling, no YUV round trip) and
# the fastest lossless codec in the bundled ffmpeg at preview sizes; decoded frames equal written frames.
_LOSSLESS_ARGS = ["-c:v", "libx264rgb", "-qp", "0", "-preset", "ultrafast", "-pix_fmt", "rgb24"]


def fps_fraction(fps: float) -> Fraction:
    """`fps` as the exact ratio ffmpeg should use (25 -> 25/1, 29.97 -> 2997/100, 30000/1001 stays)."""
    return Fraction(fps).limit_denominator(1_000_000)


def _rawvideo_input(fps: float, size: tuple[int, int]) -> list[str]:
    w, h = size
    r = fps_fraction(fps)
    return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{r.numerator}/{r.denominator}"]


def _check_frame(frame: np.ndarray, size: tuple[int, int], index: int) -> np.ndarray:
    w, h = size
    if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
        raise ValueError(
            f"frame {index}: expected uint8 array of shape ({h}, {w}, 3), got {frame.dtype} {frame.shape}"
        )
    return np.ascontiguousarray(frame)


def chunk_name(first: int, count: int) -> str:
    return f"chunk_{first:08d}_{count:06d}.mkv"


def completed_chunks(work_dir: str | os.PathLike) -> list[tuple[int, int, Path]]:
    """(first frame, frame count, path) of the finished chunks that run contiguously from frame 0."""
    work_dir = Path(work_dir)
    found: dict[int, tuple[int, Path]] = {}
    if work_dir.is_dir():
        for entry in work_dir.iterdir():
            m = _CHUNK_RE.match(entry.name)
            if m:
                found[int(m.group(1))] = (int(m.group(2)), entry)
    chunks = []
    expected = 0
    while expected in found:
        count, path = found[expected]
        chunks.append((expected, count, path))
        expected += count
    return chunks


def completed_frames(work_dir: str | os.PathLike) -> int:
    """How many frames, from frame 0 on, are safely on disk in finished chunks: the frame to resume at."""
    chunks = completed_chunks(work_dir)
    return chunks[-1][0] + chunks[-1][1] if chunks else 0


def remove_stale_temps(work_dir: Path) -> None:
    """Delete partial files left by processes that no longer exist (a live process's temps are left alone)."""
    for entry in work_dir.iterdir():
        pid = pid_of_temp(entry)
        if pid is not None and pid != os.getpid() and not pid_alive(pid):
            entry.unlink(missing_ok=True)


class ChunkWriter:
    """Frames -> lossless chunk files in `work_dir`, continuing after the chunks already there.

    Use as a context manager; `write()` frames `start, start + 1, ...` where `start == writer.start`
    (= completed_frames(work_dir) when the writer was made). Leaving the block normally finishes the last,
    possibly shorter, chunk; leaving it by an exception throws the unfinished chunk away.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike,
        fps: float,
        size: tuple[int, int],
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    ):
        if chunk_frames < 1:
            raise ValueError("chunk_frames must be >= 1")
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.work_dir)
        self.fps = fps
        self.size = (int(size[0]), int(size[1]))
        self.chunk_frames = chunk_frames
        self.start = completed_frames(self.work_dir)
        self.next_frame = self.start
        self._pipe: FFmpegPipe | None = None
        self._temp: Path | None = None
        self._chunk_first = self.start
        self._chunk_count = 0

    def _open_chunk(self) -> None:
        self._chunk_first = self.next_frame
        self._chunk_count = 0
        self._temp = temp_path_for(self.work_dir / chunk_name(self._chunk_first, 0))
        self._pipe = FFmpegPipe(
            [
                *_rawvideo_input(self.fps, self.size),
                "-i",
                "pipe:0",
                *_LOSSLESS_ARGS,
                "-f",
                "matroska",
                "-y",
                self._temp,
            ],
            what=f"chunk at frame {self._chunk_first}",
            stdin=True,
        )

    def _close_chunk(self) -> None:
        assert self._pipe is not None and self._temp is not None
        pipe, temp = self._pipe, self._temp
        self._pipe, self._temp = None, None
        try:
            pipe.finish()
            move_into_place(temp, self.work_dir / chunk_name(self._chunk_first, self._chunk_count))
        finally:
            temp.unlink(missing_ok=True)

    def write(self, frame: np.ndarray) -> None:
        frame = _check_frame(frame, self.size, self.next_frame)
        if self._pipe is None:
            self._open_chunk()
        assert self._pipe is not None and self._pipe.proc.stdin is not None
        try:
            self._pipe.proc.stdin.write(memoryview(frame).cast("B"))
        except BrokenPipeError:
            raise self._pipe.failure() from None
        self._chunk_count += 1
        self.next_frame += 1
        if self._chunk_count == self.chunk_frames:
            self._close_chunk()

    def close(self) -> None:
        """Finish the current chunk (it becomes the last, shorter one)."""
        if self._pipe is not None and self._chunk_count > 0:
            self._close_chunk()

    def abandon(self) -> None:
        """Throw the unfinished chunk away (the finished ones stay for a resume)."""
        if self._pipe is not None:
            self._pipe.abort()
            self._pipe = None
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
            self._temp = None

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()


def iter_chunk_frames(work_dir: str | os.PathLike, start: int = 0) -> Iterator[np.ndarray]:
    """The frames of the finished chunks in order, from frame `start`, decoded one at a time (RGB uint8)."""
    import av

    for first, count, path in completed_chunks(work_dir):
        if first + count <= start:
            continue
        produced = 0
        with av.open(os.fspath(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if first + produced >= start:
                    yield frame.to_ndarray(format="rgb24")
                produced += 1
        if produced != count:
            raise RenderError(f"{path}: chunk holds {produced} frames, its name says {count}")


def encode_final(
    frames: Iterable[np.ndarray],
    n_frames: int,
    fps: float,
    size: tuple[int, int],
    audio_wav: str | os.PathLike,
    out_path: str | os.PathLike,
    crf: int = 18,
    preset: str = "medium",
) -> Path:
    """One H.264 (yuv420p) + AAC (48 kHz, 192 kb/s) MP4 with +faststart from exactly `n_frames` frames.

    The audio is padded with silence or trimmed to exactly n_frames / fps inside the filter graph (not by
    -shortest, which cuts at packet boundaries). Written to a unique temp name beside `out_path`, then moved
    into place; frames are piped as they come. Returns `out_path`.
    """
    w, h = int(size[0]), int(size[1])
    if w % 2 or h % 2:
        raise InputError(None, "output.size", f"H.264 yuv420p needs even width and height, got {w}x{h}")
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    audio_samples = sample_count(n_frames, fps, OUTPUT_RATE)
    temp = temp_path_for(out_path)
    args = [
        *_rawvideo_input(fps, (w, h)),
        "-i",
        "pipe:0",
        "-i",
        os.fspath(audio_wav),
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(crf),
        # RGB -> YUV with the BT.709 matrix and say so in the stream: untagged video is guessed at by players
        # (BT.601 for small frames, BT.709 for HD) and faces drift in hue when the guess differs from the encode.
        "-vf",
        "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
        "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv",
        "-pix_fmt",
        "yuv420p",
        "-af",
        f"aresample={OUTPUT_RATE},apad=whole_len={audio_samples},atrim=end_sample={audio_samples}",
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        "-ar",
        str(OUTPUT_RATE),
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        "-y",
        temp,
    ]
    pipe = FFmpegPipe(args, what=f"final encode of {out_path.name}", stdin=True)
    written = 0
    try:
        assert pipe.proc.stdin is not None
        for frame in frames:
            if written == n_frames:
                raise RenderError(f"{out_path}: more than the {n_frames} frames the audio allows")
            frame = _check_frame(frame, (w, h), written)
            try:
                pipe.proc.stdin.write(memoryview(frame).cast("B"))
            except BrokenPipeError:
                raise pipe.failure() from None
            written += 1
        if written != n_frames:
            raise RenderError(f"{out_path}: got {written} frames, expected {n_frames}")
        pipe.finish()
        move_into_place(temp, out_path)
    except BaseException:
        pipe.abort()
        raise
    finally:
        temp.unlink(missing_ok=True)
    return out_path
