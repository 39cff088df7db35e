"""Long clips as overlapping segments, so memory does not grow with length and a resumed render is exact.

Upstream denoises the whole clip at once (its latents, pose images and pose features all grow with the length).
Here a clip of n frames is cut into segments of `size` frames whose starts are `size - overlap` apart; each is
rendered on its own (upstream's sampling, windows wrapping inside the segment), and the `overlap` frames two
segments share are cross-faded linearly. Every frame's initial noise is drawn from its own generator (seeded by the
job seed and the frame index), so the frames two segments share start from the same noise and differ only by their
temporal context, and any segment can be rendered again alone with the same result: a render resumed at frame k
starts at the segment holding k (and the one before it, when k falls in a cross-fade).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegmentPlan:
    n_frames: int
    size: int
    overlap: int

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.overlap < self.size:
            raise ValueError(f"segments of {self.size} frames cannot overlap by {self.overlap}")

    @property
    def stride(self) -> int:
        return self.size - self.overlap

    def __len__(self) -> int:
        if self.n_frames <= self.size:
            return 1 if self.n_frames > 0 else 0
        return -(-(self.n_frames - self.overlap) // self.stride)

    def frames(self, k: int) -> range:
        """The frame indices segment k renders."""
        start = k * self.stride
        return range(start, min(start + self.size, self.n_frames))

    def first_needed(self, start: int) -> int:
        """The first segment to render for output frames start .. n - 1."""
        k = min(max(start, 0) // self.stride, len(self) - 1)
        if k > 0 and start < self.frames(k).start + self.overlap:
            k -= 1  # start is inside the cross-fade with segment k - 1: that one is needed too
        return max(k, 0)


def crossfade_weights(overlap: int) -> np.ndarray:
    """Weight of the later segment on each shared frame: (j + 0.5) / overlap, never 0 or 1 exactly."""
    return (np.arange(overlap) + 0.5) / max(overlap, 1)


def blend(earlier: np.ndarray, later: np.ndarray, weight: float) -> np.ndarray:
    """uint8 frames mixed as (1 - w) * earlier + w * later, rounded."""
    mixed = (1.0 - weight) * earlier.astype(np.float32) + weight * later.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def frame_noise(seed: int, frames: range, shape: tuple[int, int, int], clamp: float):
    """(1, C, F, h, w) initial latents: frame i's from its own generator, clamped as upstream clamps them."""
    import torch

    from pipelines.engines.model.chunks import chunk_generator

    noise = torch.stack([torch.randn(shape, generator=chunk_generator(seed, i)) for i in frames], dim=1)
    return noise.clamp(-clamp, clamp)[None]
