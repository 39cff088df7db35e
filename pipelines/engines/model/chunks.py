"""The chunk grid every model engine renders on, and the random stream of each chunk.

A render of n frames is cut into chunks of `chunk_frames` on a fixed grid from frame 0: chunk c holds frames
c * chunk_frames .. (c + 1) * chunk_frames - 1 (the last one shorter). A resumed render (`render(start=k)`) renders
the chunks from the one holding frame k and drops the frames before k, so its frames are the full render's only if
nothing in a chunk depends on the chunks before it: draw each chunk's random numbers from `chunk_generator(seed, c)`,
never from one generator running through the whole video.

    for c in chunks_from(start, n, ch):
        idx = chunk_frames(c, ch, n)
        out = pipe(..., generator=chunk_generator(seed, c))
        yield from (frame for i, frame in zip(idx, out) if i >= start)
"""

from __future__ import annotations

CHUNK_FRAMES = 16
_SEED_STRIDE = (
    1_000_003  # a prime: (seed, chunk) pairs of nearby seeds do not collide for realistic chunk counts
)


def chunks_from(start: int, n: int, chunk_frames: int) -> range:
    """The chunk numbers that cover frames start .. n - 1 on the grid from frame 0."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if start >= n:
        return range(0)
    return range(max(0, start) // chunk_frames, (n + chunk_frames - 1) // chunk_frames)


def chunk_frames(c: int, chunk_frames: int, n: int) -> list[int]:
    """The output frame indices of chunk c."""
    return list(range(c * chunk_frames, min((c + 1) * chunk_frames, n)))


def chunk_seed(seed: int, c: int) -> int:
    """The seed of chunk c's own random stream (depends on the job seed and the chunk only)."""
    return int(seed) * _SEED_STRIDE + int(c) + 1


def chunk_generator(seed: int, c: int):
    """A CPU torch.Generator for chunk c (CPU: the same numbers on every device)."""
    import torch

    return torch.Generator().manual_seed(chunk_seed(seed, c))
