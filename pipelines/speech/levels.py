"""The speech's level per video frame and which frames are silent.

One definition of silence for every part that acts on it: QC's closed-mouth figure and its pause sampling
(pipelines.qc), and the engines that keep the mouth closed where the speech is silent (MuseTalk's gate), so a
render's guarantee holds on the very frames QC checks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SILENCE_BELOW_LOUD_DB = 35.0
SILENCE_FLOOR_DBFS = -55.0


def frame_levels_db(
    blocks: Iterable[np.ndarray], sample_rate: int, fps: float, n_frames: int
) -> tuple[np.ndarray, int]:
    """RMS level (dBFS) of the audio over each video frame's interval [k / fps, (k + 1) / fps), and the number of
    samples seen. Streams over `blocks` (an array works too, as one block): memory does not grow with the audio."""
    edges = np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(np.int64)
    power = np.zeros(n_frames)
    seen = 0
    for block in blocks if not isinstance(blocks, np.ndarray) else [blocks]:
        block = np.asarray(block, np.float64).reshape(-1)
        frame = np.searchsorted(edges, seen + np.arange(len(block)), side="right") - 1
        inside = frame < n_frames
        power += np.bincount(frame[inside], weights=block[inside] ** 2, minlength=n_frames)
        seen += len(block)
    counts = np.maximum(np.minimum(edges[1:], seen) - np.minimum(edges[:-1], seen), 1)
    return 10 * np.log10(power / counts + 1e-12), seen


def speech_levels_db(samples: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """frame_levels_db of speech samples held in memory, metered in blocks of 10 s: frame_levels_db makes several
    float64/int64 temporaries per block, and the whole speech as one block made a render's peak memory grow with
    the clip (bench/memory_scaling.py --long 300: peak 580 MiB against 436 at 10 s; 467 with blocks)."""
    step = 10 * sample_rate
    blocks = (samples[i : i + step] for i in range(0, len(samples), step))
    return frame_levels_db(blocks, sample_rate, fps, n_frames)[0]


def silent_frames(levels_db: np.ndarray) -> np.ndarray:
    """Frames more than SILENCE_BELOW_LOUD_DB under the loud (95th percentile) level, or under SILENCE_FLOOR_DBFS."""
    loud = float(np.percentile(levels_db, 95)) if len(levels_db) else -120.0
    return (levels_db < loud - SILENCE_BELOW_LOUD_DB) | (levels_db < SILENCE_FLOOR_DBFS)
