"""The true-peak limiter: exact when streamed, under its ceiling, transparent away from peaks, and its prediction."""

import numpy as np
import pytest

from pipelines.media.limiter import TruePeakLimiter, _window_min, limited_gain
from pipelines.media.loudness import LoudnessMeter, measure
from pipelines.media.truepeak import TickPeaks

RATE = 48_000


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Tone bursts at syllable rate with sharp clicks now and then: peaks far above the loudness."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.05 * np.clip(np.sin(2 * np.pi * 3.3 * t), 0, None) * np.sin(2 * np.pi * 180 * t)
    for at in rng.integers(RATE // 2, len(t) - RATE // 2, size=int(seconds)):
        x[at : at + 24] += rng.uniform(0.3, 0.6) * np.hanning(24)
    return x.astype(np.float32)


def limited(x: np.ndarray, gain_db: float, ceiling_db: float, block: int) -> np.ndarray:
    limiter = TruePeakLimiter(gain_db, ceiling_db)
    parts = [limiter.process(x[i : i + block]) for i in range(0, len(x), block)]
    return np.concatenate([*parts, limiter.flush()])


@pytest.mark.parametrize("width", [1, 5, 7, 241])
def test_window_minimum_matches_brute_force(width):
    v = np.random.default_rng(width).normal(size=500)
    expected = np.array([v[i : i + width].min() for i in range(len(v) - width + 1)])
    assert np.array_equal(_window_min(v, width), expected)


def test_streamed_in_any_blocks_gives_the_same_samples():
    x = speechlike(3.0)
    whole = limited(x, 12.0, -1.5, len(x))
    for block in (1000, 4801, 65536):
        assert np.abs(limited(x, 12.0, -1.5, block) - whole).max() < 1e-6
    assert len(whole) == len(x)


def test_peaks_stay_under_the_ceiling_and_quiet_parts_only_get_the_gain():
    x = speechlike(4.0)
    gain_db = 12.0
    y = limited(x, gain_db, -1.5, 10_000)
    assert measure(x * 10 ** (gain_db / 20)).true_peak > 3.0  # the plain gain would clip
    assert measure(y).true_peak <= -1.5 + 0.02
    plain = x * np.float32(10 ** (gain_db / 20))
    untouched = np.abs(y - plain) < 1e-6
    assert untouched.mean() > 0.5  # most of the signal is left exactly as the plain gain made it
    assert np.all(np.abs(y) <= np.abs(plain) + 1e-6)  # the limiter only ever turns down


def test_the_predicted_gain_reaches_the_target_after_limiting():
    x = speechlike(10.0, seed=3)
    meter = LoudnessMeter()
    meter.feed(x)
    measured = meter.result()
    plain = -16.0 - measured.integrated
    gain = limited_gain(meter.tick_energy(), TickPeaks(x), plain, -16.0, -1.6)
    assert gain > plain  # limiting took loudness away; the gain makes it up
    out = measure(limited(x, gain, -1.6, 48_000))
    assert abs(out.integrated + 16.0) < 0.15 and out.true_peak <= -1.58
