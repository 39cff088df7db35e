import numpy as np
import pytest

from pipelines.errors import InputError
from pipelines.speech.align import FULL_CELLS, align_script, dtw_path, spectral_features
from pipelines.speech.tts import SILENCE, synthesize

SCRIPT = (
    "The committee met on Tuesday to review the budget. After a long discussion, they agreed to fund "
    "the new library, but only if the city matches the grant. Everyone seemed pleased with the outcome."
)
CUT_AFTER = ("budget", "discussion", "library", "grant")


def _recording(voice: str, rate: int, pitch: int, sample_rate: int | None = None, reverb: bool = False):
    """The script read by another espeak voice at another rate and pitch, with silences inserted after some
    words and at the start, a faint noise floor, optionally resampled and reverberant (a room-like decaying
    impulse response). Returns samples, rate, true word starts, word labels."""
    rec = synthesize(SCRIPT, voice=voice, rate_wpm=rate, pitch=pitch)
    sr = rec.sample_rate
    cuts = [0] + [int(w.end * sr) for w in rec.words if w.label in CUT_AFTER] + [len(rec.samples)]
    pieces = [np.zeros(int(0.4 * sr), np.float32)]
    shift_at: list[tuple[float, float]] = []
    shift = len(pieces[0]) / sr
    for k in range(len(cuts) - 1):
        pieces.append(rec.samples[cuts[k] : cuts[k + 1]])
        shift_at.append((cuts[k] / sr, shift))
        gap = np.zeros(int((0.3 + 0.25 * k) * sr), np.float32)
        pieces.append(gap)
        shift += len(gap) / sr
    x = np.concatenate(pieces)
    x = x + np.random.default_rng(0).normal(0.0, 0.003, len(x)).astype(np.float32)
    truth = np.array([w.start + [s for b, s in shift_at if w.start >= b - 1e-9][-1] for w in rec.words])
    if sample_rate is not None:
        t_new = np.arange(int(len(x) / sr * sample_rate)) / sample_rate
        x = np.interp(t_new, np.arange(len(x)) / sr, x).astype(np.float32)
        sr = sample_rate
    if reverb:
        n = int(0.25 * sr)
        ir = np.random.default_rng(1).normal(0, 1, n) * np.exp(-np.arange(n) / (0.05 * sr))
        ir[0] = 8.0
        x = np.convolve(x, ir / (np.abs(ir).sum() / 2))[: len(x)].astype(np.float32)
    return x, sr, truth, [w.label for w in rec.words]


@pytest.mark.parametrize(
    "voice,rate,pitch,sample_rate,reverb",
    [
        ("en+f3", 140, 70, None, False),
        ("en-us", 230, 35, 16000, False),
        ("en", 115, 50, 48000, False),
        ("en+croak", 150, 40, 16000, True),
    ],
)
def test_word_starts_land_near_the_known_ones(voice, rate, pitch, sample_rate, reverb):
    x, sr, truth, labels = _recording(voice, rate, pitch, sample_rate, reverb)
    phonemes, words = align_script(x, sr, SCRIPT, voice="en")
    assert [w.label for w in words] == labels
    errors = np.abs(np.array([w.start for w in words]) - truth)
    assert np.median(errors) < 0.06, errors
    assert np.percentile(errors, 90) < 0.15, errors
    # The words after the inserted pauses start after them, not in them.
    for label in ("After", "they", "but", "Everyone"):
        k = labels.index(label)
        assert abs(words[k].start - truth[k]) < 0.15


def test_aligned_phonemes_cover_the_recording_and_pauses_are_silence():
    x, sr, _, _ = _recording("en", 150, 50)
    duration = len(x) / sr
    phonemes, words = align_script(x, sr, SCRIPT)
    assert phonemes[0].start == 0.0 and phonemes[-1].end == pytest.approx(duration)
    for a, b in zip(phonemes, phonemes[1:], strict=False):
        assert a.end == pytest.approx(b.start) and a.start < a.end
    for a, b in zip(words, words[1:], strict=False):
        assert a.start < a.end <= b.start + 1e-9
    # The longest inserted pause (1.05 s after "grant") is a silence unit of about that length.
    longest = max((p for p in phonemes if p.label == SILENCE), key=lambda p: p.end - p.start)
    assert longest.end - longest.start > 0.8


def test_long_inputs_use_the_windowed_multiresolution_path():
    rng = np.random.default_rng(0)
    # A random walk in feature space, and a copy slowed down by 1.5x with a 3 s hold in the middle.
    base = np.cumsum(rng.normal(0, 1, (2000, 13)), axis=0).astype(np.float32)
    idx = np.floor(np.arange(3000) / 1.5).astype(int)
    idx = np.concatenate([idx[:1500], np.full(300, idx[1499]), idx[1500:]])
    rows = base[idx]
    assert len(rows) * len(base) > FULL_CELLS
    path = dtw_path(rows, base)
    assert path[0] == 0 and path[-1] == len(base) - 1
    assert np.all(np.diff(path) >= 0) and np.all(np.diff(path) <= 3)
    assert np.median(np.abs(path - idx)) <= 1 and np.max(np.abs(path - idx)) <= 5


def test_features_do_not_depend_on_the_sample_rate_much():
    s = synthesize("A short sentence for features.")
    a = spectral_features(s.samples, s.sample_rate)
    t = np.arange(int(s.duration * 16000)) / 16000
    b = spectral_features(np.interp(t, np.arange(len(s.samples)) / s.sample_rate, s.samples), 16000)
    n = min(len(a), len(b))
    assert np.corrcoef(a[:n].ravel(), b[:n].ravel())[0, 1] > 0.9


def test_recording_far_too_short_for_the_script_is_an_input_error():
    x = synthesize("Hi.", rate_wpm=400).samples
    with pytest.raises(InputError):
        align_script(x, 22050, SCRIPT)
