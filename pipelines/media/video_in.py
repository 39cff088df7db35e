"""Persona sources as a stream of RGB frames at the job's frame rate.

A video is resampled by presentation time, not by index, so 29.97 fps, 30 fps and variable-frame-rate clips
all land on the same clock: output frame i shows the last source frame whose timestamp is before the middle
of output slot i, i.e. (i + 0.5) / fps. Frames are decoded as they are consumed; nothing holds the clip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipelines.errors import InputError
from pipelines.media.formats import media_kind
from pipelines.media.probe import normalise_rotation


def _open_container(path: Path):
    import av

    if not path.is_file():
        raise InputError(path, None, f"video file {path.name!r} not found")
    try:
        return av.open(os.fspath(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(path, None, f"{path.name!r} is not a readable video ({exc})") from None


def _to_rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
    """RGB uint8 as displayed: rotation applied, then resized to `size` (width, height) when given."""
    rotation = normalise_rotation(frame.rotation)
    if size is not None:
        w, h = size
        if rotation in (90, 270):
            w, h = h, w
        if (frame.width, frame.height) != (w, h):
            frame = frame.reformat(width=w, height=h, interpolation="AREA")
    image = frame.to_ndarray(format="rgb24")
    if rotation:
        image = np.rot90(image, k=rotation // 90)
    return np.ascontiguousarray(image)


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """A still image as RGB uint8 in display orientation (EXIF applied, alpha dropped), optionally resized."""
    from PIL import Image, ImageOps

    from pipelines.media.images import ImageProblem, open_image

    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, f"image file {path.name!r} not found")
    try:
        with open_image(path) as img:
            # Phone photos carry their orientation in EXIF instead of in the pixels.
            img = _eight_bit(ImageOps.exif_transpose(img)).convert("RGB")
            if size is not None and img.size != tuple(size):
                img = img.resize(tuple(size), Image.Resampling.LANCZOS)
            return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    except ImageProblem as exc:
        raise InputError(path, None, str(exc)) from None


def _eight_bit(img):
    """A 16-bit or float greyscale image scaled to 8 bits: Pillow's own conversion clips those values at 255,
    which turns a 16-bit photo into a white sheet (and "no face found")."""
    from PIL import Image

    if img.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return img
    pixels = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        top = 1.0 if pixels.max() <= 1.0 else 255.0  # float images come as 0..1 or 0..255
    elif img.mode == "I" and pixels.max() <= 255:
        top = 255.0  # 8-bit values that were stored wide
    else:
        top = 65535.0
    return Image.fromarray(np.round(np.clip(pixels / top, 0, 1) * 255).astype(np.uint8), "L")


def iter_frames(path: str | os.PathLike, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Every frame of the first video stream of `path`, in presentation order, as displayed (RGB uint8)."""
    path = Path(path)
    container = _open_container(path)
    with container:
        if not container.streams.video:
            raise InputError(path, None, f"{path.name!r} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield _to_rgb(frame, size)


class FrameSource:
    """Frames of a still image or a video at `fps`, RGB uint8 (H, W, 3), streamed; iterate as often as needed.

    `len()` is the number of frames at `fps` (1 for a still image, which `frames(count=...)` repeats).
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None):
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.size = size
        self.is_still = media_kind(self.path) == "image"
        self._image: np.ndarray | None = None
        self._times: np.ndarray | None = None  # source presentation times (s), from the first frame
        if self.is_still:
            self._image = self._load_image()
            self._n = 1
        else:
            self._times, end = self._scan_timestamps()
            self._n = max(1, int(round(end * self.fps)))
        height, width = self._first_shape()
        self.width, self.height = width, height

    # -- still image --------------------------------------------------------------------------------------
    def _load_image(self) -> np.ndarray:
        return read_image(self.path, self.size)

    # -- video ----------------------------------------------------------------------------------------------
    def _scan_timestamps(self) -> tuple[np.ndarray, float]:
        """Presentation times of all frames from the packet index (demux only, no decoding) and the clip end."""
        container = _open_container(self.path)
        with container:
            if not container.streams.video:
                raise InputError(self.path, None, f"{self.path.name!r} has no video stream")
            stream = container.streams.video[0]
            tb = stream.time_base
            pts: list[int] = []
            max_pts, last_duration = 0, 0  # the latest timestamp and its packet duration
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                if not pts or packet.pts > max_pts:
                    max_pts, last_duration = packet.pts, packet.duration or 0
                pts.append(packet.pts)
        if not pts:
            raise InputError(self.path, None, f"the video stream of {self.path.name!r} has no frames")
        stamps = np.array(sorted(pts), dtype=np.int64)
        times = (stamps - stamps[0]).astype(np.float64) * float(tb)
        if last_duration:
            tail = float(last_duration * tb)
        elif len(times) > 1:
            tail = float(np.median(np.diff(times)))
        else:
            tail = 1.0 / self.fps
        return times, float(times[-1] + tail)

    def source_index(self, i: int) -> int:
        """Index (in presentation order) of the source frame shown at output frame i."""
        assert self._times is not None
        k = int(np.searchsorted(self._times, (i + 0.5) / self.fps, side="left")) - 1
        return min(max(k, 0), len(self._times) - 1)

    def _first_shape(self) -> tuple[int, int]:
        if self._image is not None:
            return self._image.shape[:2]
        first = next(self._iter_video(0, 1))
        return first.shape[:2]

    def _iter_video(self, start: int, count: int) -> Iterator[np.ndarray]:
        wanted = [self.source_index(i) for i in range(start, start + count)]
        if not wanted:
            return
        container = _open_container(self.path)
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            pos = 0  # next entry of `wanted` to produce
            current: np.ndarray | None = None
            # The decoder hands frames out in presentation order, so the k-th decoded frame is the k-th
            # timestamp of the scan (counting also copes with duplicate timestamps in sloppy files).
            for k, frame in enumerate(container.decode(stream)):
                if k < wanted[pos]:
                    continue  # decoded only to reach a later frame
                current = None
                while pos < len(wanted) and wanted[pos] <= k:
                    # a repeated frame is a copy, so a consumer drawing on one cannot change the next
                    current = _to_rgb(frame, self.size) if current is None else current.copy()
                    yield current
                    pos += 1
                if pos == len(wanted):
                    return
            if current is None:
                raise InputError(
                    self.path, None, f"{self.path.name!r} ended after {pos} of {len(wanted)} frames"
                )
            while pos < len(wanted):  # timestamps promised more frames than the decoder gave
                current = current.copy()
                yield current
                pos += 1

    # -- public ------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """`count` frames from output index `start` (default: to the end; a still repeats `count` times)."""
        if count is None:
            count = max(0, len(self) - start)
        if self._image is not None:
            for _ in range(count):
                yield self._image.copy()
            return
        if start < 0 or start + count > len(self):
            raise IndexError(f"frames {start}..{start + count - 1} outside 0..{len(self) - 1} of {self.path}")
        yield from self._iter_video(start, count)


def open_source(path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None) -> FrameSource:
    """A still image or a video as RGB frames at `fps` (rotation applied, optionally resized to (w, h))."""
    return FrameSource(path, fps, size)
