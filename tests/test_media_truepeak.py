"""True peaks computed only where they can matter give exactly the values of the whole signal upsampled."""

import numpy as np
import pytest
from scipy.signal import resample_poly

from pipelines.media.limiter import limited_gain
from pipelines.media.loudness import LoudnessMeter
from pipelines.media.truepeak import (
    CONTEXT,
    GROUP,
    OVERSAMPLE,
    TickPeaks,
    _taps,
    group_bounds,
    magnitudes,
    peak_max,
    sample_peaks,
    upsample,
)
from tests.test_media_limiter import speechlike

RATE = 48_000


def signals():
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 0.2, 9_000).astype(np.float32)
    # alternating full-scale samples: the interpolation overshoots them most
    square = np.tile(np.array([1, 1, -1, -1], np.float32), 2_000) * 0.5
    return {"speech-like": speechlike(2.0), "noise": noise, "square": square}


def brute_sample_peaks(x):
    up = np.abs(upsample(x))
    padded = np.concatenate([np.zeros(2, np.float32), up, np.zeros(2, np.float32)])
    return np.stack([padded[k : k + len(up) : OVERSAMPLE] for k in range(5)]).max(axis=0)


@pytest.mark.parametrize("n", [1, 17, 1000, 4801])
def test_upsample_is_resample_poly(n):
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    assert np.array_equal(upsample(x), resample_poly(x, OVERSAMPLE, 1))


def test_the_filter_reaches_less_than_the_context():
    taps = _taps()
    reach = max(len(np.trim_zeros(taps[p::OVERSAMPLE])) for p in range(OVERSAMPLE))
    assert reach <= 2 * CONTEXT


@pytest.mark.parametrize("name", ["speech-like", "noise", "square"])
def test_a_stretch_upsampled_with_its_context_is_bit_identical(name):
    x = signals()[name]
    whole = np.abs(upsample(x))
    for lo, hi in [(0, 5), (0, 300), (123, 777), (len(x) - 40, len(x)), (len(x) - 1, len(x))]:
        assert np.array_equal(magnitudes(x, np.array([[lo, hi]])), whole[OVERSAMPLE * lo : OVERSAMPLE * hi])
    # many stretches upsampled together, end to end, give the same values each
    spans = np.array([(0, 5), (9, 60), (61, 62), (200, 900), (len(x) - 30, len(x))])
    expected = np.concatenate([whole[OVERSAMPLE * lo : OVERSAMPLE * hi] for lo, hi in spans])
    assert np.array_equal(magnitudes(x, spans), expected)


@pytest.mark.parametrize("name", ["speech-like", "noise", "square"])
def test_group_bounds_hold(name):
    x = signals()[name]
    for lo, hi in [(0, len(x)), (30, len(x) - 70)]:
        whole = np.abs(upsample(x))[OVERSAMPLE * lo : OVERSAMPLE * hi]
        bounds = group_bounds(x, lo, hi)
        per_group = [
            whole[j : j + GROUP * OVERSAMPLE].max() for j in range(0, len(whole), GROUP * OVERSAMPLE)
        ]
        assert np.all(np.array(per_group) <= bounds)
        assert bounds.max() < 2.3 * np.abs(x).max()  # a bound, not a guess far above the signal


@pytest.mark.parametrize("name", ["speech-like", "noise", "square"])
def test_peak_max_is_the_exact_maximum(name):
    x = signals()[name]
    whole = np.abs(upsample(x))
    assert peak_max(x, 0, len(x)) == whole.max()
    assert peak_max(x, 100, 2100) == whole[400:8400].max()
    assert peak_max(x, 0, len(x), at_least=5.0) == 5.0


@pytest.mark.parametrize("name", ["speech-like", "noise", "square"])
def test_sample_peaks_are_exact_above_the_floor(name):
    x = signals()[name]
    brute = brute_sample_peaks(x)[CONTEXT:-CONTEXT]
    floor = 0.3 * brute.max()
    got = sample_peaks(x, CONTEXT, len(x) - CONTEXT, floor)
    assert np.array_equal(got[brute > floor], brute[brute > floor])
    computed = got > 0
    assert np.array_equal(got[computed], brute[computed])  # elsewhere 0, never a wrong value


def test_tick_peaks_are_exact_where_they_can_reach_the_floor_and_skipped_elsewhere():
    x = speechlike(3.0)
    n = len(x) // GROUP
    exact = np.abs(upsample(x)).reshape(-1, GROUP * OVERSAMPLE)[:n].max(axis=1)
    exact = 20 * np.log10(np.maximum(exact.astype(np.float64), 1e-12))  # silent ticks: -240 dB
    peaks = TickPeaks(x)
    floor = float(exact.max()) - 6.0
    got = peaks.at_or_above(floor).copy()
    above = exact > floor
    assert np.allclose(got[above], exact[above], atol=1e-9)
    assert np.all(got[~above] <= floor + 1e-9)
    assert peaks._exact.mean() < 0.5  # most ticks of speech never needed upsampling
    assert np.allclose(peaks.at_or_above(-np.inf), exact, atol=1e-9)


def test_the_lazy_search_finds_the_gain_that_all_exact_peaks_give():
    x = speechlike(10.0, seed=3)
    meter = LoudnessMeter()
    meter.feed(x)
    plain = -16.0 - meter.result().integrated
    resolved = TickPeaks(x)
    resolved.at_or_above(-np.inf)
    lazy = TickPeaks(x)
    gain = limited_gain(meter.tick_energy(), lazy, plain, -16.0, -1.6)
    assert gain == limited_gain(meter.tick_energy(), resolved, plain, -16.0, -1.6)
    assert not lazy._exact.all()


def test_long_stretches_are_cut_into_batches_with_the_same_values(monkeypatch):
    import pipelines.media.truepeak as truepeak

    x = signals()["noise"]  # every group is hot
    whole = np.abs(upsample(x))
    brute = brute_sample_peaks(x)[CONTEXT:-CONTEXT]
    monkeypatch.setattr(truepeak, "_BATCH", 5 * GROUP)
    assert len(truepeak.hot_runs(np.ones(40, bool))) == 8
    assert peak_max(x, 0, len(x)) == whole.max()
    assert np.array_equal(sample_peaks(x, CONTEXT, len(x) - CONTEXT, 0.0), brute)
    n = len(x) // GROUP
    exact = whole[: n * GROUP * OVERSAMPLE].reshape(n, GROUP * OVERSAMPLE).max(axis=1)
    assert np.allclose(TickPeaks(x).at_or_above(-np.inf), 20 * np.log10(exact), atol=1e-9)
