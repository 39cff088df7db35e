"""True peaks (ITU-R BS.1770): magnitudes of the audio 4x oversampled, computed only where they can matter.

The oversampling is scipy's `resample_poly(x, 4, 1)` (a Kaiser-windowed sinc, beta 5, 81 taps), with the filter
designed once instead of on every call. Each interpolated value is a weighted sum of the input samples within
10 of it, and the weights of any one output phase add up, in magnitude, to at most `bound_gain()` (~2.24, the
half-way phase). So no value can exceed bound_gain() times the largest sample magnitude within reach, and a
stretch whose bound stays at or under the level that matters (the largest peak so far, a limiter's ceiling)
need not be upsampled. The stretches that can matter are upsampled with CONTEXT input samples either side,
which gives bit for bit the values of the whole signal upsampled (a test checks it).

Speech spends most of its time far below its peaks: in the bench's speech ~8 % of the 1 ms ticks can hold the
maximum and ~30 % can reach a limiter's ceiling, so most of the upsampling is skipped.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

OVERSAMPLE = 4
CONTEXT = 16  # input samples each side a stretch is upsampled with: more than the filter reaches (10)
GROUP = 48  # samples per bound (1 ms at 48 kHz, a loudness tick); a multiple of CONTEXT
_HALF = 10 * OVERSAMPLE  # resample_poly's half filter length for 4x
_ROUNDING = 1.0 + 1e-4  # float32 sums of ~20 products may exceed the exact bound by ~1e-6 of it
_MERGE_GAP = 1  # cold groups between two hot stretches upsampled with them (cheaper than a context each)
_BATCH = 1 << 18  # samples upsampled in one call at most (bounds the memory: 4x this in float32)


@lru_cache(maxsize=1)
def _taps() -> np.ndarray:
    """resample_poly's filter for 4x in float32, with its one leading zero (output 4 i then lies on input i)."""
    from scipy.signal import firwin

    h = firwin(2 * _HALF + 1, 1.0 / OVERSAMPLE, window=("kaiser", 5.0)).astype(np.float32)
    h *= OVERSAMPLE
    return np.concatenate([np.zeros(1, np.float32), h])


def upsample(x: np.ndarray) -> np.ndarray:
    """x at 4x the rate in float32: the values of scipy's resample_poly(x, 4, 1)."""
    from scipy.signal import upfirdn

    x = np.asarray(x, np.float32)
    skip = _HALF + 1
    return upfirdn(_taps(), x, OVERSAMPLE, 1)[skip : skip + OVERSAMPLE * len(x)]


@lru_cache(maxsize=1)
def bound_gain() -> float:
    """The largest sum of tap magnitudes of one output phase (with a margin for float32 rounding)."""
    h = _taps()
    return float(max(np.abs(h[p::OVERSAMPLE]).sum() for p in range(OVERSAMPLE))) * _ROUNDING


def magnitudes(x: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """|upsample(x)| at the 4 (hi - lo) positions of samples lo..hi - 1 of each (lo, hi) row of `spans`, the
    spans' values laid end to end: the values the whole of x upsampled gives there. One upsample call for all:
    each span's samples with CONTEXT either side (zeros beyond x's ends, as the whole signal has) are laid end
    to end, and the filter cannot reach from one span into the next. (A call costs as much as upsampling ~350
    samples, ~12 us here, and speech's peaks are many short stretches.)"""
    lo, hi = spans[:, 0], spans[:, 1]
    width = hi - lo + 2 * CONTEXT
    at = _aranges(lo - CONTEXT, width)
    samples = np.asarray(x)[np.clip(at, 0, len(x) - 1)].astype(np.float32)
    samples[(at < 0) | (at >= len(x))] = 0.0
    up = np.abs(upsample(samples))
    first = OVERSAMPLE * (np.cumsum(width) - width + CONTEXT)  # each span's own values, after its context
    return up[_aranges(first, OVERSAMPLE * (hi - lo))]


def _aranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """np.arange(s, s + n) for every s, n, concatenated."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)


def group_bounds(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """An upper bound of the |upsampled| values of each GROUP of samples from lo on (the last group may run past
    hi): bound_gain() times the largest |x| within CONTEXT of the group."""
    n = -(-(hi - lo) // GROUP)
    first = lo - CONTEXT
    m = np.zeros(n * GROUP + 2 * CONTEXT, np.float32)
    start, stop = max(first, 0), min(first + len(m), len(x))
    if stop > start:
        m[start - first : stop - first] = np.abs(x[start:stop])
    cells = m.reshape(-1, CONTEXT).max(axis=1)  # group j with its context: cells 3 j .. 3 j + 4
    per = GROUP // CONTEXT
    bound = cells[0 : n * per : per].copy()
    for offset in range(1, per + 2):
        np.maximum(bound, cells[offset : offset + n * per : per], out=bound)
    return bound * np.float32(bound_gain())


def hot_runs(hot: np.ndarray) -> list[np.ndarray]:
    """The runs of True in `hot` as (start, stop) rows, runs at most _MERGE_GAP apart joined, in batches of
    about _BATCH samples (a run longer than that is cut)."""
    index = np.flatnonzero(hot)
    if not len(index):
        return []
    breaks = np.flatnonzero(np.diff(index) > _MERGE_GAP + 1)
    starts = index[np.concatenate([[0], breaks + 1])]
    stops = index[np.concatenate([breaks, [len(index) - 1]])] + 1
    most = _BATCH // GROUP
    pieces = -(-(stops - starts) // most)
    starts = _aranges(np.zeros_like(pieces), pieces) * most + np.repeat(starts, pieces)
    stops = np.minimum(starts + most, np.repeat(stops, pieces))
    batch = np.cumsum(stops - starts) // most
    return np.split(np.stack([starts, stops], axis=1), np.flatnonzero(np.diff(batch)) + 1)


def _spans(runs: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Runs of groups from lo as spans of samples, cut at hi."""
    return np.minimum(lo + runs * GROUP, hi)


def peak_max(x: np.ndarray, lo: int, hi: int, at_least: float = 0.0) -> float:
    """max(at_least, the largest |upsampled| value of samples lo..hi - 1 of x). The group with the largest bound
    is upsampled first; then only the groups whose bound is above the maximum found."""
    if hi <= lo:
        return at_least
    bounds = group_bounds(x, lo, hi)
    best = at_least
    top = int(np.argmax(bounds))
    if bounds[top] > best:
        best = max(best, float(magnitudes(x, _spans(np.array([[top, top + 1]]), lo, hi)).max()))
    for runs in hot_runs(bounds > best):
        best = max(best, float(magnitudes(x, _spans(runs, lo, hi)).max()))
    return best


def sample_peaks(x: np.ndarray, lo: int, hi: int, floor: float) -> np.ndarray:
    """Each sample's true peak for samples lo..hi - 1 of x: the largest |upsampled| value within half a sample
    of it (positions 4 i - 2 .. 4 i + 2). Exact wherever it can be above `floor`; 0 where it cannot."""
    peaks = np.zeros(hi - lo)
    for runs in hot_runs(group_bounds(x, lo, hi) > floor):
        spans = _spans(runs, lo, hi)
        n = spans[:, 1] - spans[:, 0]
        # each span one sample longer on both sides, for the +-2 positions around its first and last samples
        up = magnitudes(x, spans + np.array([-1, 1]))
        near = up.copy()
        for shift in (1, 2):
            np.maximum(near[shift:], up[:-shift], out=near[shift:])
            np.maximum(near[:-shift], up[shift:], out=near[:-shift])
        own = np.cumsum(n + 2) - (n + 2) + 1  # where each span's own samples start among the upsampled ones
        peaks[_aranges(spans[:, 0] - lo, n)] = near[_aranges(own, n) * OVERSAMPLE]
    return peaks


class TickPeaks:
    """The true peak of every complete GROUP (1 ms tick) of mono samples, in dBTP, each computed the first time a
    caller can need it: `at_or_above(floor_db)` is exact wherever a tick's peak can be above floor_db, and
    under floor_db (the tick's bound) elsewhere. `samples` may be a memory map of the joined audio."""

    def __init__(self, samples: np.ndarray):
        self._x = samples
        self.n = len(samples) // GROUP
        self._bound_db = _db(group_bounds(samples, 0, self.n * GROUP)) if self.n else np.zeros(0)
        self._db = self._bound_db.copy()
        self._exact = np.zeros(self.n, bool)

    def at_or_above(self, floor_db: float) -> np.ndarray:
        for runs in hot_runs((self._bound_db > floor_db) & ~self._exact):
            ticks = _aranges(runs[:, 0], runs[:, 1] - runs[:, 0])
            up = magnitudes(self._x, runs * GROUP)
            self._db[ticks] = _db(up.reshape(len(ticks), GROUP * OVERSAMPLE).max(axis=1))
            self._exact[ticks] = True
        return self._db


def _db(linear: np.ndarray) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(linear.astype(np.float64), 1e-12))
