"""Frames of a persona source (video or still) by index, without holding the video in memory.

    reader = FrameReader(path, fps, size)          # one per source per render, used by one thread at a time
    frames = reader.get([s0, s1, ...])             # {index: (h, w, 3) uint8}

A video is decoded forwards from the first wanted frame and the decoder is kept open, so consecutive chunks cost
one decoding pass; asking for an earlier frame (a ping-pong turn, see engines.base.loop_frame) restarts it there. A still is
decoded once per call and shared by every index.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np


class FrameReader:
    """Frames of one source at `fps` (resampled by timestamps), at `size` (w, h) or the source's own size."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int] | None = None):
        from pipelines.media.video_in import open_source

        self.src = open_source(Path(path), fps, size)
        self._it: Iterator[np.ndarray] | None = None
        self._pos = 0

    def get(self, indices: list[int]) -> dict[int, np.ndarray]:
        if self.src.is_still:
            image = next(self.src.frames(0, 1))
            return {i: image for i in indices}
        wanted = sorted(set(indices))
        lo, hi = wanted[0], wanted[-1]
        if self._it is None or self._pos > lo:
            self._it = self.src.frames(start=lo)
            self._pos = lo
        out: dict[int, np.ndarray] = {}
        while self._pos <= hi:
            frame = next(self._it)
            if self._pos in wanted:
                out[self._pos] = frame
            self._pos += 1
        return out
