"""The numpy R128 meter against ffmpeg's own measurement, and the normalisation paths it chooses."""

from __future__ import annotations

import math
import wave

import numpy as np
import pytest

from pipelines.media.audio import apply_normalisation, measure_loudness, plan_normalisation
from pipelines.media.loudness import LoudnessMeter, measure
from tests.compose_helpers import write_wav

RATE = 48_000


def speechlike(seconds, level=0.12, seed=0):
    """Noise bursts with syllable-rate envelope and pauses: a loudness range like speech's."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) * (np.sin(2 * np.pi * 0.23 * t) > -0.6)
    return (level * envelope * rng.normal(0, 1, len(t))).astype(np.float32)


SIGNALS = {
    "speech-like": lambda: speechlike(12.0),
    "quiet speech-like": lambda: speechlike(12.0, level=0.02, seed=1),
    "tone": lambda: (0.5 * np.sin(2 * np.pi * 997 * np.arange(6 * RATE) / RATE)).astype(np.float32),
}


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_meter_agrees_with_ffmpeg(tmp_path, name):
    samples = SIGNALS[name]()
    path = write_wav(tmp_path / "a.wav", samples, RATE)
    ours, ref = measure(samples), measure_loudness(path)
    assert abs(ours.integrated - ref.integrated) < 0.3
    assert abs(ours.true_peak - ref.true_peak) < 0.3
    assert abs(ours.threshold - ref.threshold) < 0.3
    assert abs(ours.lra - ref.lra) < 1.0


def test_streaming_in_odd_blocks_equals_one_block():
    samples = speechlike(5.0)
    meter = LoudnessMeter()
    for i in range(0, len(samples), 7777):
        meter.feed(samples[i : i + 7777])
    whole = measure(samples)
    streamed = meter.result()
    assert streamed.integrated == pytest.approx(whole.integrated, abs=1e-6)
    assert streamed.true_peak == pytest.approx(whole.true_peak, abs=1e-3)
    assert streamed.lra == pytest.approx(whole.lra, abs=1e-6)


def test_under_one_gating_block_has_no_integrated_loudness():
    short = speechlike(0.3)
    result = measure(short)
    assert result.gated_out and math.isinf(result.integrated)
    assert measure(np.zeros(RATE, np.float32)).silent


def _raw(path, samples):
    samples.astype("<f4").tofile(path)
    return path


def tone_bursts(seconds, level):
    """A 220 Hz tone in syllable-rate bursts: speech's rhythm with a low crest factor."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) * np.sin(2 * np.pi * 220 * t)).astype(
        np.float32
    )


def _metered(samples):
    meter = LoudnessMeter()
    meter.feed(samples)
    return meter


def _normalised(raw, meter, out_wav, n_samples):
    """plan_normalisation then apply_normalisation, as JoinedAudio does: (loudness in, loudness out, kind)."""
    plan = plan_normalisation(raw, meter)
    return plan.loudness_in, apply_normalisation(raw, plan, out_wav, n_samples), plan.kind


def test_plain_gain_when_the_peaks_allow_it(tmp_path):
    samples = tone_bursts(8.0, level=0.02)
    raw = _raw(tmp_path / "in.f32", samples)
    loud_in, loud_out, kind = _normalised(raw, _metered(samples), tmp_path / "out.wav", 8 * RATE)
    assert kind == "linear"
    ref = measure_loudness(tmp_path / "out.wav")
    assert abs(ref.integrated + 16.0) < 0.5 and abs(loud_out.integrated - ref.integrated) < 0.3
    with wave.open(str(tmp_path / "out.wav")) as w:
        assert w.getnframes() == 8 * RATE and w.getframerate() == RATE


def test_peaks_that_forbid_a_plain_gain_are_limited_and_the_target_still_reached(tmp_path):
    samples = tone_bursts(8.0, level=0.02)
    samples[RATE : RATE + 40] = 0.95  # a click: a gain to -16 LUFS would push it far over -1.5 dBTP
    raw = _raw(tmp_path / "in.f32", samples)
    loud_in, loud_out, kind = _normalised(raw, _metered(samples), tmp_path / "out.wav", 9 * RATE)
    assert kind == "limited"
    ref = measure_loudness(tmp_path / "out.wav")  # ffmpeg's own meter, independent of ours
    assert ref.true_peak <= -1.5 + 0.05 and abs(ref.integrated + 16.0) < 0.3
    assert abs(loud_out.integrated - ref.integrated) < 0.3
    with wave.open(str(tmp_path / "out.wav")) as w:
        assert w.getnframes() == 9 * RATE
        out = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0
    # away from the click the bursts get one plain gain (the limiter acts around the peak, not everywhere),
    # above the plain gain the measurement asked for: it makes up the loudness the limited click no longer has
    far = slice(4 * RATE, 8 * RATE)
    ratio = np.dot(out[far], samples[far]) / np.dot(samples[far], samples[far])
    assert np.abs(out[far] - ratio * samples[far]).max() < 1e-4
    assert 20 * np.log10(ratio) > -16.0 - loud_in.integrated
