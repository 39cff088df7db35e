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

Engines that cross-fade overlapping chunks and give each chunk one prompt (EchoMimic V3) plan their chunks with
`plan_overlapping(n, length, overlap, changes)`: the grid moves so a chunk starts at each change of prompt that is
far enough from the previous start; the plan depends on the whole clip only, so a resumed render makes the same
chunks (`first_overlapping(plan, start, overlap)` is where a resume begins).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def plan_overlapping(
    n: int, length: int, overlap: int, changes: Sequence[int] = (), min_own: int | None = None
) -> list[tuple[int, int]]:
    """(first frame, frames) of each chunk covering frames 0 .. n - 1, consecutive chunks sharing `overlap` frames.

    A chunk is at most `length` frames; the next one starts `length - overlap` frames later, or earlier, at the
    first of `changes` (frame numbers, e.g. where the prompt changes) that lies more than `min_own` frames after the
    chunk's start (default: a quarter chunk, at least the overlap) - closer changes stay inside the chunk, which
    is not worth a whole generation. A change that falls in the frames the next grid chunk shares with this one
    lands inside that cross-fade (within `overlap` frames of the start)."""
    if not 0 <= overlap < length:
        raise ValueError(f"need 0 <= overlap < length, got overlap {overlap}, length {length}")
    min_own = max(overlap, length // 4) if min_own is None else min_own
    todo = sorted(c for c in set(changes) if 0 < c < n)
    plan, a = [], 0
    while True:
        if a + length >= n:
            plan.append((a, max(n - a, 1)))
            return plan
        nxt = a + length - overlap
        todo = [c for c in todo if c > a]
        if todo and a + min_own < todo[0] <= nxt:
            nxt = todo[0]
        plan.append((a, nxt + overlap - a))
        a = nxt


def first_overlapping(plan: Sequence[tuple[int, int]], start: int, overlap: int) -> int:
    """The chunk a render from frame `start` begins with: the one holding it, or an earlier one while `start` is in
    a cross-fade (the first `overlap` frames of a chunk need the chunk before)."""
    c = 0
    while c + 1 < len(plan) and plan[c + 1][0] <= start:
        c += 1
    while c > 0 and start - plan[c][0] < overlap:
        c -= 1
    return c


def chunk_seed(seed: int, c: int) -> int:
    """The seed of chunk c's own random stream (depends on the job seed and the chunk only)."""
    return int(seed) * _SEED_STRIDE + int(c) + 1


def chunk_generator(seed: int, c: int):
    """A CPU torch.Generator for chunk c (CPU: the same numbers on every device)."""
    import torch

    return torch.Generator().manual_seed(chunk_seed(seed, c))
