"""A look-ahead true-peak limiter for mono 48 kHz audio, streamed block by block, and its prediction.

Loudness normalisation applies one gain that brings the speech to the target loudness; where that gain pushes
peaks over the true-peak ceiling, the limiter turns the gain down around those peaks only. Its gain curve, in dB:
- each sample's needed reduction, ceiling - its true peak (the largest 4x-oversampled magnitude within half a
  sample of it, so peaks between samples count, as in BS.1770), 0 where none is needed;
- ramped in before the peak at ATTACK_DB_PER_MS over at most LOOKAHEAD_MS (the look-ahead: the gain is down by
  the time the peak arrives, nothing is clipped; a reduction deeper than the ramp can reach starts with a step);
- and released after it at RELEASE_DB_PER_S (no pumping on syllables).
Both ramps are straight lines in dB, so the curve is a running minimum: a sliding-window minimum for the attack
and a cumulative minimum for the release, vectorised, with only the last gain and the look-ahead carried from
one block to the next. Memory does not grow with the audio.

The same curve computed on 1 ms ticks (each tick's K-weighted energy from the loudness meter, its true peak
from truepeak.TickPeaks) predicts the loudness that a given gain gives after limiting, without a pass over the
audio: `limited_gain` searches it for the gain that reaches the target, then one pass applies it. The true peaks
are computed only where they can reach the ceiling (pipelines.media.truepeak), in the search and in the pass.
"""

from __future__ import annotations

import numpy as np

from pipelines.media.truepeak import CONTEXT, TickPeaks, sample_peaks

RATE = 48_000
ATTACK_DB_PER_MS = 4.0  # a 6 dB reduction ramps in over 1.5 ms before its peak
LOOKAHEAD_MS = 5
# back up from 3 dB in 60 ms: a release slow enough to leave the voice's pitch periods alone, and fast enough to
# recover between syllables (at 20 dB/s the gain stayed down through speech, and no gain reached -16 LUFS)
RELEASE_DB_PER_S = 50.0
_PER_MS = RATE // 1000
_LOOKAHEAD = LOOKAHEAD_MS * _PER_MS
_MAX_EXTRA_DB = 12.0  # the most gain added beyond the plain gain to make up for the limiting
_FIRST_STEP_DB = 0.5
# the search's precision, on the gain and on the loudness: far under what any meter reads
_GAIN_TOLERANCE_DB = 1e-3
_LOUDNESS_TOLERANCE_LU = 1e-4


def _window_min(v: np.ndarray, w: int) -> np.ndarray:
    """min(v[i : i + w]) for every i with a whole window (van Herk / Gil-Werman: a prefix and a suffix minimum
    inside blocks of w, so the cost does not grow with w)."""
    n = len(v) - w + 1
    if n <= 0:
        return np.zeros(0)
    blocks = -(-len(v) // w)
    padded = np.full(blocks * w, np.inf)
    padded[: len(v)] = v
    grid = padded.reshape(blocks, w)
    prefix = np.minimum.accumulate(grid, axis=1).ravel()
    suffix = np.minimum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    # the window from i ends at i + w - 1: the suffix of i's block, the prefix of the next one up to there
    return np.minimum(suffix[:n], prefix[w - 1 : w - 1 + n])


def gain_curve_db(
    need: np.ndarray, lookahead: int, attack: float, release: float, last: float = 0.0
) -> np.ndarray:
    """The limiter's gain (dB, <= 0) for the first len(need) - lookahead steps of `need` (needed reductions,
    dB <= 0, at a uniform step; the last `lookahead` are the look-ahead). `attack` and `release` are dB per
    step; `last` is the gain of the step before the first (release continues from it)."""
    done = len(need) - lookahead
    idx = np.arange(len(need), dtype=np.float64)
    # attack: min over j in [i, i + lookahead] of need[j] + attack * (j - i)
    ahead = _window_min(need + attack * idx, lookahead + 1)[:done] - attack * idx[:done]
    # release: min over j <= i of ahead[j] + release * (i - j), and the previous gain released as far
    rel = release * idx[:done]
    gain = np.minimum(np.minimum.accumulate(ahead - rel) + rel, last + release * (idx[:done] + 1))
    return np.minimum(gain, 0.0)


def _needed_db(peak: np.ndarray, ceiling_db: float) -> np.ndarray:
    need = np.zeros(len(peak))
    over = peak > 10.0 ** (ceiling_db / 20.0)
    need[over] = ceiling_db - 20.0 * np.log10(peak[over])
    return need


def limited_gain(
    tick_energy: np.ndarray, tick_peaks: TickPeaks, gain_db: float, target_lufs: float, ceiling_db: float
) -> float:
    """The gain (dB, >= gain_db) whose limited output reaches `target_lufs`, predicted from the input's 1 ms
    ticks (K-weighted energy, true peak): the limiter's curve on ticks, a search on the gain."""
    from pipelines.media.loudness import _hops, integrated_loudness

    pad = np.zeros(LOOKAHEAD_MS)

    def loudness(gain: float) -> float:
        # only the ticks this gain can push over the ceiling need their exact peak
        peak_db = tick_peaks.at_or_above(ceiling_db - gain)[: len(tick_energy)]
        need = np.minimum(ceiling_db - (peak_db + gain), 0.0)
        curve = gain_curve_db(
            np.concatenate([need, pad]), LOOKAHEAD_MS, ATTACK_DB_PER_MS, RELEASE_DB_PER_S / 1000
        )
        energy = tick_energy * 10.0 ** ((curve + gain) / 10.0)
        return integrated_loudness(_hops(energy))

    low = gain_db
    miss_low = loudness(low) - target_lufs  # < 0 below the answer, >= 0 at or above it
    if miss_low >= 0:
        return low
    # The bracket grows from a small step: the make-up gain is usually a dB or two, and the lower the highest
    # gain tried, the fewer ticks' peaks the search needs.
    step = _FIRST_STEP_DB
    while True:
        high = gain_db + min(step, _MAX_EXTRA_DB)
        miss_high = loudness(high) - target_lufs
        if miss_high >= 0:
            break
        if step >= _MAX_EXTRA_DB:
            return high
        low, miss_low, step = high, miss_high, 2.0 * step
    # Inside the bracket, regula falsi with the Illinois rule (an end that stays twice has its miss halved,
    # so the bracket keeps shrinking from both sides): the loudness is smooth and monotonic in the gain, and
    # this takes ~5 evaluations where bisection took ~12.
    moved = 0  # which end the last step moved: -1 low, 1 high
    while high - low > _GAIN_TOLERANCE_DB:
        mid = (low * miss_high - high * miss_low) / (miss_high - miss_low)
        miss = loudness(mid) - target_lufs
        if abs(miss) < _LOUDNESS_TOLERANCE_LU:
            return mid
        if miss < 0:
            low, miss_low = mid, miss
            miss_high, moved = (miss_high / 2 if moved == -1 else miss_high), -1
        else:
            high, miss_high = mid, miss
            miss_low, moved = (miss_low / 2 if moved == 1 else miss_low), 1
    return 0.5 * (low + high)


class TruePeakLimiter:
    """Blocks of samples in, in order, through `process` (the gain `gain_db` applied, then limited to
    `ceiling_db`); `flush` once at the end returns the samples held back for their look-ahead."""

    def __init__(self, gain_db: float, ceiling_db: float):
        self.gain = 10.0 ** (gain_db / 20.0)
        self.ceiling_db = ceiling_db
        self._x = np.zeros(CONTEXT)  # samples not yet returned, after CONTEXT samples of history
        self._need = np.zeros(0)  # needed reduction of the unfinished samples whose context is complete
        self._gain_db = 0.0  # the limiter's gain on the last returned sample
        self._owed = 0  # samples fed and not yet returned

    def process(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, np.float64).ravel() * self.gain
        self._owed += len(block)
        self._x = np.concatenate([self._x, block])
        return self._finish()

    def flush(self) -> np.ndarray:
        """The samples still held back, their context and look-ahead completed with silence."""
        self._x = np.concatenate([self._x, np.zeros(CONTEXT + _LOOKAHEAD)])
        return self._finish()

    def _finish(self) -> np.ndarray:
        known = len(self._need)
        ready = len(self._x) - 2 * CONTEXT - known  # new samples with their full context on both sides
        if ready > 0:
            segment = self._x[known : known + ready + 2 * CONTEXT]
            ceiling = 10.0 ** (self.ceiling_db / 20.0)
            peak = sample_peaks(segment, CONTEXT, CONTEXT + ready, floor=ceiling)
            self._need = np.concatenate([self._need, _needed_db(peak, self.ceiling_db)])
        done = min(len(self._need) - _LOOKAHEAD, self._owed)  # finished: their look-ahead is known
        if done <= 0:
            return np.zeros(0, np.float32)
        need = self._need[: done + _LOOKAHEAD]
        gain_db = gain_curve_db(
            need, _LOOKAHEAD, ATTACK_DB_PER_MS / _PER_MS, RELEASE_DB_PER_S / RATE, self._gain_db
        )
        self._gain_db = float(gain_db[-1])
        samples = self._x[CONTEXT : CONTEXT + done]
        out = samples * np.power(10.0, gain_db / 20.0) if gain_db.min() < 0.0 else samples
        self._x = self._x[done:]
        self._need = self._need[done:]
        self._owed -= done
        return out.astype(np.float32)
