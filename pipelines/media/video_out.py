"""Frames out: the job's H.264 video as resumable segments, then one mux with the audio.

Frames are encoded as they come into segments of `segment_frames` frames, each a complete H.264 stream (it opens
on a keyframe) with the final codec settings. A segment is encoded under a temporary name and renamed into place
only after its ffmpeg exited cleanly, so whatever kills the process (SIGKILL included), the files named
`segment_<first>_<count>.mp4` are complete, and `completed_frames()` is where a resumed render starts. Every
segment is a fresh encoder fed the same frames, so a resumed render writes the same bytes as an uninterrupted one.
The audio is encoded once, by `AudioTrack` in a background ffmpeg while the frames render, to exactly
n_frames / fps; `mux_segments` then joins the segments (ffmpeg's concat demuxer) and the track, both copied. One
pass, no intermediate lossless copy: the frames go from the compositor to x264 once.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.errors import InputError, RenderError
from pipelines.media.atomic import move_into_place, pid_alive, pid_of_temp, temp_path_for
from pipelines.media.audio import OUTPUT_RATE, sample_count
from pipelines.media.ffmpeg import FFmpegPipe, run_ffmpeg

if TYPE_CHECKING:
    from pipelines.provenance.watermark import Watermarker

DEFAULT_SEGMENT_FRAMES = (
    250  # x264's own default keyframe interval: segments add no keyframes it would not place
)
_SEGMENT_RE = re.compile(r"^segment_(\d{8})_(\d{6})\.mp4$")
# What the raw frames are (I420Frames makes them so), given as input options so ffmpeg passes them to x264 for the
# stream's VUI (given as output options they make ffmpeg insert a range conversion). Untagged video is guessed at
# by players (BT.601 for small frames, BT.709 for HD) and faces drift in hue when the guess differs from the encode.
_COLOUR_TAGS = [
    *("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"),
    *("-chroma_sample_location", "center"),
]


def fps_fraction(fps: float) -> Fraction:
    """`fps` as the exact ratio ffmpeg should use (25 -> 25/1, 29.97 -> 2997/100, 30000/1001 stays)."""
    return Fraction(fps).limit_denominator(1_000_000)


def _rawvideo_input(fps: float, size: tuple[int, int]) -> list[str]:
    w, h = size
    r = fps_fraction(fps)
    rate = f"{r.numerator}/{r.denominator}"
    return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}", "-r", rate, *_COLOUR_TAGS]


def _bt709_limited() -> np.ndarray:
    """The 3x4 matrix from RGB levels (0..255) to BT.709 Y'CbCr in limited range (Y 16..235, Cb and Cr 16..240)."""
    kr, kb = 0.2126, 0.0722
    luma = np.array([kr, 1.0 - kr - kb, kb])
    cb = (np.array([0.0, 0.0, 1.0]) - luma) / (2.0 * (1.0 - kb))
    cr = (np.array([1.0, 0.0, 0.0]) - luma) / (2.0 * (1.0 - kr))
    return np.array([[*luma * 219 / 255, 16], [*cb * 224 / 255, 128], [*cr * 224 / 255, 128]], np.float32)


class I420Frames:
    """RGB frames -> the planar 4:2:0 bytes x264 encodes (BT.709, limited range, chroma as 2x2 means, so sited
    at the centre of each 2x2 block), in one reused buffer; with `watermark`, each frame marked on the way
    (`Watermarker.embed_ycbcr`: on the chroma plane, from the 2x2 means computed here anyway).

    Done here rather than by ffmpeg's scaler because OpenCV's vectorised colour transform and 2x2 mean cost
    ~0.2 ms at 512x512 and the scaler ~0.7 ms, and the pipe then carries half the bytes
    (bench/media_encode_floor.py)."""

    MATRIX = _bt709_limited()

    def __init__(self, size: tuple[int, int], watermark: Watermarker | None = None):
        w, h = size
        self.half = (w // 2, h // 2)
        self.buffer = np.empty(w * h * 3 // 2, np.uint8)
        q = (w // 2) * (h // 2)
        self.y = self.buffer[: w * h].reshape(h, w)
        self.cb = self.buffer[w * h : w * h + q].reshape(h // 2, w // 2)
        self.cr = self.buffer[w * h + q :].reshape(h // 2, w // 2)
        self.watermark = watermark

    def __call__(self, rgb: np.ndarray) -> memoryview:
        """The frame's bytes; valid until the next call."""
        import cv2

        ycbcr = cv2.transform(rgb, self.MATRIX)  # rounded and saturated to uint8
        cv2.extractChannel(ycbcr, 0, dst=self.y)
        # INTER_AREA at exactly half size is the mean of each 2x2 block
        half = cv2.resize(ycbcr, self.half, interpolation=cv2.INTER_AREA)
        cv2.extractChannel(half, 1, dst=self.cb)
        cv2.extractChannel(half, 2, dst=self.cr)
        if self.watermark is not None:
            self.watermark.embed_ycbcr(half, self.cb, self.MATRIX)
        return memoryview(self.buffer)


def _check_frame(frame: np.ndarray, size: tuple[int, int], index: int) -> np.ndarray:
    w, h = size
    if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
        raise ValueError(
            f"frame {index}: expected uint8 array of shape ({h}, {w}, 3), got {frame.dtype} {frame.shape}"
        )
    return np.ascontiguousarray(frame)


def segment_name(first: int, count: int) -> str:
    return f"segment_{first:08d}_{count:06d}.mp4"


def completed_segments(work_dir: str | os.PathLike) -> list[tuple[int, int, Path]]:
    """(first frame, frame count, path) of the finished segments that run contiguously from frame 0."""
    work_dir = Path(work_dir)
    found: dict[int, tuple[int, Path]] = {}
    if work_dir.is_dir():
        for entry in work_dir.iterdir():
            m = _SEGMENT_RE.match(entry.name)
            if m:
                found[int(m.group(1))] = (int(m.group(2)), entry)
    segments = []
    expected = 0
    while expected in found:
        count, path = found[expected]
        segments.append((expected, count, path))
        expected += count
    return segments


def completed_frames(work_dir: str | os.PathLike) -> int:
    """How many frames, from frame 0 on, are safely on disk in finished segments: the frame to resume at."""
    segments = completed_segments(work_dir)
    return segments[-1][0] + segments[-1][1] if segments else 0


def remove_stale_temps(work_dir: Path) -> None:
    """Delete partial files left by processes that no longer exist (a live process's temps are left alone)."""
    for entry in work_dir.iterdir():
        pid = pid_of_temp(entry)
        if pid is not None and pid != os.getpid() and not pid_alive(pid):
            entry.unlink(missing_ok=True)


class _Segment:
    """One segment's encoder: I420 frames in through a pipe, the file under a temporary name until it is
    finished."""

    def __init__(self, work_dir: Path, first: int, fps: float, size: tuple[int, int], codec: list[str]):
        self.first = first
        self.count = 0
        self.final = work_dir / segment_name(first, 0)
        self.temp = temp_path_for(self.final)
        self.pipe = FFmpegPipe(
            [*_rawvideo_input(fps, size), "-i", "pipe:0", *codec, "-an", "-f", "mp4", "-y", self.temp],
            what=f"video segment at frame {first}",
            stdin=True,
        )

    def write(self, frame: memoryview) -> None:
        assert self.pipe.proc.stdin is not None
        try:
            self.pipe.proc.stdin.write(frame)
        except BrokenPipeError:
            raise self.pipe.failure() from None
        self.count += 1

    def end_input(self) -> None:
        """No more frames: ffmpeg drains its queue in the background while the next segment starts."""
        assert self.pipe.proc.stdin is not None
        try:
            self.pipe.proc.stdin.close()
        except BrokenPipeError:
            pass

    def commit(self) -> None:
        try:
            self.pipe.finish()
            move_into_place(self.temp, self.final.with_name(segment_name(self.first, self.count)))
        finally:
            self.temp.unlink(missing_ok=True)

    def abandon(self) -> None:
        self.pipe.abort()
        self.temp.unlink(missing_ok=True)


class SegmentWriter:
    """Frames -> H.264 segment files in `work_dir`, continuing after the segments already there.

    Use as a context manager; `write()` frames `start, start + 1, ...` where `start == writer.start`
    (= completed_frames(work_dir) when the writer was made). Leaving the block normally finishes the last,
    possibly shorter, segment; leaving it by an exception throws the unfinished ones away. `before_commit(end)`
    is called just before a segment ending at frame `end` is renamed into place (a caller's own per-frame state
    saved then is never behind the segments on disk).

    A full segment's encoder finishes in the background while frames already flow into the next one (so the
    pipeline does not stall on x264's lookahead at every boundary); it is renamed into place by the first
    `write` (or `poll`) after its ffmpeg exited, or when the next segment is full, or on close / abandon.

    With `total` (the frames the caller will write in all), each segment's ffmpeg is started one segment ahead
    (the first one on entering the block) and waits for its frames: its start-up (~20 ms) then never holds up
    a write. Without it, a segment's ffmpeg starts at its first frame. `x264_params`: x264's own options
    (`key=value:...`) on top of the preset. `watermark`: every frame marked on its way in (I420Frames).
    """

    def __init__(
        self,
        work_dir: str | os.PathLike,
        fps: float,
        size: tuple[int, int],
        crf: int = 18,
        preset: str = "medium",
        segment_frames: int = DEFAULT_SEGMENT_FRAMES,
        before_commit: Callable[[int], None] | None = None,
        total: int | None = None,
        x264_params: str | None = None,
        watermark: Watermarker | None = None,
    ):
        if segment_frames < 1:
            raise ValueError("segment_frames must be >= 1")
        w, h = int(size[0]), int(size[1])
        if w % 2 or h % 2:
            raise InputError(None, "output.size", f"H.264 yuv420p needs even width and height, got {w}x{h}")
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.work_dir)
        self.fps = fps
        self.size = (w, h)
        self.codec = [
            "-c:v",
            "libx264",
            "-preset",
            preset,
            "-crf",
            str(crf),
            # x264's default, 1.5 threads per core, oversubscribes a small machine where the engine and the
            # compositor already keep two cores busy: one thread per remaining core, at least one
            *("-threads", str(max(1, (os.cpu_count() or 1) - 2))),
            *(("-x264-params", x264_params) if x264_params else ()),
        ]
        self.to_i420 = I420Frames(self.size, watermark)
        self.segment_frames = segment_frames
        self.before_commit = before_commit or (lambda _end: None)
        self.start = completed_frames(self.work_dir)
        self.next_frame = self.start
        self.total = total
        self._open: _Segment | None = None
        self._draining: _Segment | None = None
        self._ahead: _Segment | None = None  # the next segment's encoder, started before its first frame

    def write(self, frame: np.ndarray) -> None:
        frame = _check_frame(frame, self.size, self.next_frame)
        self.poll()
        if self._open is None:
            self._open = self._segment_at(self.next_frame)
            self._start_ahead(self.next_frame + self.segment_frames)
        self._open.write(self.to_i420(frame))
        self.next_frame += 1
        if self._open.count == self.segment_frames:
            self._rotate()

    def _segment_at(self, first: int) -> _Segment:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.first == first:
            return ahead
        if ahead is not None:
            ahead.abandon()
        return _Segment(self.work_dir, first, self.fps, self.size, self.codec)

    def _start_ahead(self, first: int) -> None:
        if self.total is not None and first < self.total and self._ahead is None:
            self._ahead = _Segment(self.work_dir, first, self.fps, self.size, self.codec)

    def _drop_ahead(self) -> None:
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            ahead.abandon()

    def poll(self) -> None:
        """Rename the segment finishing in the background into place if its encoder has exited."""
        if self._draining is not None and self._draining.pipe.proc.poll() is not None:
            self._commit_draining()

    def _rotate(self) -> None:
        segment, self._open = self._open, None
        assert segment is not None
        segment.end_input()
        self._commit_draining()
        self._draining = segment

    def _commit_draining(self) -> None:
        if self._draining is not None:
            segment, self._draining = self._draining, None
            self.before_commit(segment.first + segment.count)
            segment.commit()

    def close(self) -> None:
        """Finish every segment (the open one becomes the last, shorter one)."""
        self._drop_ahead()
        if self._open is not None and self._open.count > 0:
            self._rotate()
        self._commit_draining()

    def abandon(self) -> None:
        """Throw the open segment away; one that already has all its frames is still finished for a resume."""
        self._drop_ahead()
        if self._open is not None:
            self._open.abandon()
            self._open = None
        with contextlib.suppress(RenderError):  # the caller is already failing; a resume redoes this segment
            self._commit_draining()

    def __enter__(self) -> SegmentWriter:
        self._start_ahead(self.next_frame)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()


class AudioTrack:
    """The output's AAC track (48 kHz, 192 kb/s), exactly n_frames / fps long, encoded by a background ffmpeg
    from `wav` into `work_dir` while the frames render; `mux_segments` then copies it (no audio work left at the
    end of a render).

    The length is fixed inside the filter graph (padded with silence or trimmed to the sample), not by
    -shortest, which cuts at packet boundaries. Encoding once and copying gives the same stream, priming and
    decoded samples as encoding during the mux (checked when this was written: same sample count, a click at the
    same sample)."""

    def __init__(self, wav: str | os.PathLike, n_frames: int, fps: float, work_dir: str | os.PathLike):
        samples = sample_count(n_frames, fps, OUTPUT_RATE)
        self.path = Path(work_dir) / "audio.m4a"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temp = temp_path_for(self.path)
        self._pipe: FFmpegPipe | None = FFmpegPipe(
            [
                *("-i", os.fspath(wav), "-map", "0:a:0"),
                "-af",
                f"aresample={OUTPUT_RATE},apad=whole_len={samples},atrim=end_sample={samples}",
                # the native encoder's "fast" coder: a third less CPU than its default two-loop search, and at
                # 192 kb/s speech has bits to spare
                *("-c:a", "aac", "-aac_coder", "fast", "-b:a", "192k", "-ar", str(OUTPUT_RATE)),
                *("-f", "mp4", "-y", self._temp),
            ],
            what=f"AAC encode of {Path(wav).name}",
        )

    def finish(self) -> Path:
        """Wait for the encode; the .m4a's path (FFmpegError if it failed)."""
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            try:
                pipe.finish()
                move_into_place(self._temp, self.path)
            finally:
                self._temp.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        if self._pipe is not None:
            self._pipe.abort()
            self._pipe = None
            self._temp.unlink(missing_ok=True)

    def __enter__(self) -> AudioTrack:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def mux_segments(
    work_dir: str | os.PathLike,
    n_frames: int,
    fps: float,
    track: str | os.PathLike,
    out_path: str | os.PathLike,
) -> Path:
    """The finished segments joined with the finished audio `track` (AudioTrack.finish()), both copied (no
    re-encode), +faststart, into out_path.

    Written to a unique temp name, then moved into place.
    """
    work_dir, out_path = Path(work_dir), Path(out_path)
    segments = completed_segments(work_dir)
    have = completed_frames(work_dir)
    if have != n_frames:
        raise RenderError(f"{out_path}: the segments hold {have} frames, expected {n_frames}")
    listing = work_dir / "segments.txt"
    # concat demuxer syntax: one `file '<path>'` line per segment, quotes escaped as '\''
    listing.write_text(
        "".join("file '{}'\n".format(os.fspath(p.resolve()).replace("'", "'\\''")) for _, _, p in segments)
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(out_path)
    try:
        run_ffmpeg(
            [
                *("-f", "concat", "-safe", "0", "-i", listing),
                *("-i", track),
                *("-map", "0:v:0", "-map", "1:a:0", "-c", "copy"),
                *("-movflags", "+faststart", "-f", "mp4", "-y", temp),
            ],
            what=f"mux of {out_path.name}",
        )
        move_into_place(temp, out_path)
    finally:
        temp.unlink(missing_ok=True)
    return out_path


def encode_final(
    frames: Iterable[np.ndarray],
    n_frames: int,
    fps: float,
    size: tuple[int, int],
    audio_wav: str | os.PathLike,
    out_path: str | os.PathLike,
    crf: int = 18,
    preset: str = "medium",
    x264_params: str | None = None,
    watermark: Watermarker | None = None,
) -> Path:
    """One H.264 (yuv420p) + AAC MP4 from exactly `n_frames` frames held or streamed: SegmentWriter then
    mux_segments in a scratch folder beside `out_path`. Returns `out_path`; `watermark` marks every frame."""
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".encode-") as scratch:
        audio = AudioTrack(audio_wav, n_frames, fps, scratch)
        with (
            audio,
            SegmentWriter(
                scratch,
                fps,
                size,
                crf,
                preset,
                segment_frames=n_frames,
                total=n_frames,
                x264_params=x264_params,
                watermark=watermark,
            ) as writer,
        ):
            for frame in frames:
                if writer.next_frame == n_frames:
                    raise RenderError(f"{out_path}: more than the {n_frames} frames the audio allows")
                writer.write(frame)
        if writer.next_frame != n_frames:
            audio.abort()
            raise RenderError(f"{out_path}: got {writer.next_frame} frames, expected {n_frames}")
        return mux_segments(scratch, n_frames, fps, audio.finish(), out_path)
