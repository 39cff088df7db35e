import numpy as np
import pytest

from pipelines.speech.mouth import MAX_CHANGE_PER_S, PARAMS, PRE_OPEN, MouthTrack, mouth_curves
from pipelines.speech.track import Speech, TimedUnit
from pipelines.speech.tts import SILENCE, synthesize
from pipelines.speech.visemes import PBM, SIL, viseme_for
from tests.speech_helpers import frames_within, noise_bursts, padded_speech

FPS = 25.0
LEAD, TAIL = 1.0, 1.0


@pytest.fixture(scope="module")
def draft():
    return synthesize("Papa bob made a map. We should see all of you soon, right?")


@pytest.mark.parametrize("with_timing", [True, False], ids=["phonemes", "signal"])
def test_closed_in_generated_silence_open_in_generated_speech(draft, with_timing):
    speech = padded_speech(draft, LEAD, TAIL, FPS, with_timing=with_timing)
    track = mouth_curves(speech)
    assert track.source == ("phonemes" if with_timing else "signal")
    assert track.n_frames == speech.n_frames
    for name in PARAMS:
        curve = getattr(track, name)
        assert curve.shape == (speech.n_frames,) and curve.dtype == np.float32
    silent = np.concatenate(
        [
            frames_within(0, LEAD, FPS, margin=0.15),
            frames_within(LEAD + draft.duration, speech.duration, FPS, 0.15),
        ]
    )
    assert track.open[silent].max() < 0.02
    assert np.abs(track.width[silent]).max() < 0.02 and track.round[silent].max() < 0.02
    speaking = frames_within(LEAD, LEAD + draft.duration, FPS)
    assert track.open[speaking].max() > 0.6
    assert np.mean(track.open[speaking] > 0.15) > 0.5


def test_mouth_closes_in_the_pause_between_sentences():
    draft = synthesize("This is the first sentence. And this is the second one.")
    speech = padded_speech(draft, 0.5, 0.5, FPS)
    track = mouth_curves(speech)
    pause = max((p for p in speech.phonemes[1:-1] if p.label == SILENCE), key=lambda p: p.end - p.start)
    assert pause.end - pause.start > 0.25
    mid = int((0.5 * (pause.start + pause.end)) * FPS)
    assert track.open[mid] < 0.1
    assert track.open[: mid - 3].max() > 0.35 and track.open[mid + 3 :].max() > 0.35


def test_lips_close_on_bilabials():
    draft = synthesize("papa bob map")
    speech = padded_speech(draft, 0.5, 0.5, FPS)
    track = mouth_curves(speech)
    bilabials = [p for p in speech.phonemes if p.label in ("p", "b", "m")]
    vowels = [p for p in speech.phonemes if p.label not in ("p", "b", "m", SILENCE)]
    assert len(bilabials) == 6
    for p in bilabials:
        near = frames_within(p.start - 0.03, p.end + 0.03, FPS)
        near = near if len(near) else np.array([int(0.5 * (p.start + p.end) * FPS)])
        assert track.closure[near].max() > 0.5, p
        assert track.open[near].min() < 0.2, p
    vowel_frames = np.concatenate([[int(0.5 * (v.start + v.end) * FPS)] for v in vowels])
    assert track.closure[vowel_frames].mean() < 0.5
    assert track.open[vowel_frames].max() > 0.6


def test_rounded_and_spread_vowels():
    speech = padded_speech(synthesize("who you; see me"), 0.3, 0.3, FPS)
    track = mouth_curves(speech)
    uw = [p for p in speech.phonemes if p.label == "u:"]
    iy = [p for p in speech.phonemes if p.label == "i:"]
    assert uw and iy
    mid = lambda p: int(0.5 * (p.start + p.end) * FPS)  # noqa: E731
    assert min(track.round[mid(p)] for p in uw) > 0.5
    assert max(track.width[mid(p)] for p in uw) < -0.2
    assert min(track.width[mid(p)] for p in iy) > 0.3


@pytest.mark.parametrize("fps", [25.0, 30.0, 60.0])
@pytest.mark.parametrize("with_timing", [True, False], ids=["phonemes", "signal"])
def test_no_jitter(draft, fps, with_timing):
    track = mouth_curves(padded_speech(draft, 0.3, 0.3, fps, with_timing=with_timing))
    bound = MAX_CHANGE_PER_S / fps + 1e-6
    for name in PARAMS:
        assert np.abs(np.diff(getattr(track, name))).max() <= bound, name
    # Not flat either: the mouth moves through the words.
    assert np.abs(np.diff(track.open)).sum() > 3.0


def test_signal_only_noise_bursts_and_silence():
    sr = 16000
    pattern = [(0.6, 0.0), (0.5, 0.2), (0.5, 0.0), (0.4, 0.05), (0.8, 0.0), (0.3, 0.3), (0.6, 0.0)]
    x = noise_bursts(pattern, sr)
    n_frames = int(len(x) / sr * FPS)
    track = mouth_curves(Speech(x[: int(n_frames / FPS * sr)], sr, FPS, n_frames))
    assert track.source == "signal"
    t = 0.0
    for duration, amplitude in pattern:
        inside = frames_within(t, t + duration, FPS, margin=0.12)
        if amplitude == 0.0:
            assert track.open[inside].max() < 0.02, (t, duration)
        else:
            assert track.open[inside].mean() > 0.3, (t, duration, amplitude)
        t += duration


def test_signal_only_all_silence_stays_closed():
    x = np.random.default_rng(1).normal(0, 1e-4, 16000 * 2).astype(np.float32)
    track = mouth_curves(Speech(x, 16000, FPS, 50))
    assert track.open.max() == 0.0 and track.closure.max() == 0.0


def test_signal_only_closure_at_a_dip_before_a_burst():
    sr = 16000
    # vowel-like noise, an 80 ms stop closure, then an abrupt release and more speech
    x = noise_bursts([(0.5, 0.0), (0.3, 0.2), (0.08, 0.0), (0.3, 0.25), (0.5, 0.0)], sr, floor=1e-4)
    release = int((0.5 + 0.3 + 0.08) * sr)
    x[release : release + 40] *= 0.0  # no ramp on the release: a burst
    x[release : release + int(0.3 * sr)] = noise_bursts([(0.3, 0.25)], sr, floor=0.0, seed=3)
    n_frames = int(len(x) / sr * FPS)
    track = mouth_curves(Speech(x[: int(n_frames / FPS * sr)], sr, FPS, n_frames))
    gap = frames_within(0.78, 0.9, FPS)
    assert track.closure[gap].max() > 0.4
    assert track.closure[frames_within(0.0, 0.5, FPS)].max() == 0.0


def test_padding_after_the_last_phoneme_rests():
    draft = synthesize("map")
    speech = padded_speech(draft, 0.0, 1.0, FPS)
    track = mouth_curves(speech)
    assert track.open[-10:].max() < 0.02 and track.closure[-10:].max() < 0.02


def test_phoneme_timing_beyond_the_audio_is_ignored():
    x = np.zeros(16000, dtype=np.float32)
    units = (TimedUnit(0.0, 0.5, "a"), TimedUnit(0.5, 3.0, "m"))
    track = mouth_curves(Speech(x, 16000, FPS, 25, units))
    assert isinstance(track, MouthTrack) and track.n_frames == 25
    # Silent audio keeps the jaw shut even where a phoneme says "open".
    assert track.open.max() < 0.02


def test_viseme_table():
    for label in ("p", "b", "m"):
        assert viseme_for(label) is PBM
    assert viseme_for("_") is SIL and viseme_for("_:") is SIL
    assert viseme_for("'A:").start.open > 0.8
    assert viseme_for("u:").start.round > 0.8
    assert viseme_for("f").start.closure == 0.5
    diph = viseme_for("aI")
    assert diph.start.open > diph.end.open and diph.end.width > diph.start.width
    # Every English phoneme espeak produced for a varied text has its own entry or a sensible fallback.
    s = synthesize(
        "The quick brown fox jumps over the lazy dog; pleasure, choir, thin, bottle, hour, year, oil."
    )
    for p in s.phonemes:
        v = viseme_for(p.label)
        assert 0.0 <= v.start.open <= 1.0 and v.dominance > 0


def test_coarticulation_keeps_the_jaw_open_through_a_short_consonant_and_is_symmetric():
    """The jaw is slow: between two open vowels a short /t/ narrows the mouth a little instead of shutting it
    (per-phoneme jumps read as flapping), and the smoothing is symmetric, so the opening's centre stays where
    the vowels are (no lag). Before the sound the mouth only pre-shapes (a pause before a sentence stays closed)."""
    rate = 16000
    x = np.random.default_rng(0).normal(0, 0.1, int(1.6 * rate)).astype(np.float32)
    x[: int(0.5 * rate)] = 0.0
    x[int(1.1 * rate) :] = 0.0
    spans = [(0.5, 0.62, "a"), (0.62, 0.68, "t"), (0.68, 0.8, "a"), (0.8, 0.86, "t"), (0.86, 0.98, "a")]
    units = tuple(TimedUnit(a, b, label) for a, b, label in spans) + (TimedUnit(0.98, 1.1, SILENCE),)
    track = mouth_curves(Speech(x, rate, FPS, 40, units))
    vowel_peak = track.open.max()
    t_frames = [int(0.65 * FPS), int(0.83 * FPS)]
    assert track.open[t_frames].min() > 0.8 * vowel_peak
    vowels = slice(int(0.5 * FPS), int(0.98 * FPS) + 1)
    centre = float((track.open[vowels] * np.arange(40)[vowels]).sum() / track.open[vowels].sum())
    assert centre == pytest.approx(0.74 * FPS - 0.5, abs=0.5)  # the vowels' centre (0.5 .. 0.98 s)
    assert track.open[: int(0.48 * FPS)].max() <= PRE_OPEN + 1e-6  # frames wholly before the sound
    assert track.open[: int(0.3 * FPS)].max() == 0.0 and track.open[int(1.3 * FPS) :].max() < 0.02


def test_signal_only_the_mouth_stays_closed_before_the_sound_and_peaks_inside_it():
    """The pause before a sentence stays closed: before the sound the opening only pre-shapes (the jaw's
    symmetric smoothing and the voice-activity pre-roll opened it a frame early, which QC counts as pause)."""
    sr = 16000
    x = noise_bursts([(0.5, 0.0), (0.5, 0.2), (0.5, 0.0)], sr, floor=1e-4)
    track = mouth_curves(Speech(x, sr, FPS, int(1.5 * FPS)))
    assert track.open[: int(0.48 * FPS)].max() <= PRE_OPEN + 1e-6  # frames wholly before the sound
    assert int(0.5 * FPS) <= int(np.argmax(track.open)) < int(1.0 * FPS)


def _speaking(speech: Speech) -> np.ndarray:
    """The frames QC counts as speech (its pauses left out), as bench/preview_mouth_stats.py compares them."""
    from pipelines.qc.figures import pause_frames, silent_frames
    from pipelines.qc.measure import frame_levels_db

    levels, _ = frame_levels_db(speech.samples, speech.sample_rate, speech.fps, speech.n_frames)
    return ~pause_frames(silent_frames(levels), speech.fps)


@pytest.mark.parametrize(
    "text",
    [
        # few open vowels: one constant scale left it small (90th percentile 0.71)
        "Thanks for joining. Here is what changed this week, and why it matters. First, the numbers.",
        "I moved to the city in the spring, and by autumn I had learned every street by heart.",
    ],
)
def test_a_draft_opens_as_wide_as_recorded_speech_whatever_its_vowels(text):
    """The signal curve puts the loud parts of real recordings at a 90th percentile of 0.83-0.87 (four at hand);
    a draft's phoneme curve gets there too, whatever its text (it opened like espeak's own flat synthetic
    loudness: 0.71 on the first text, 1.0 on the second)."""
    speech = padded_speech(synthesize(text), 0.5, 0.5)
    spoken = mouth_curves(speech).open[_speaking(speech)]
    assert 0.8 <= float(np.percentile(spoken, 90)) <= 0.9


def test_a_draft_opens_like_a_real_speaker_on_average(shared_dir):
    """A draft's mean opening over its spoken frames against the real talking-head clip's own speech (the
    signal curve, whose mean OPEN_GAP is calibrated on): within 15 % (it was 0.81x)."""
    from math import gcd

    from scipy.signal import resample_poly

    from pipelines.media.audio import load_audio

    rate = 16000
    clip = shared_dir / "data" / "clips" / "latentsync_demo1_video.mp4"
    if not clip.is_file():
        pytest.skip("no real talking clip in ../shared")
    real = load_audio(clip, rate)
    n = int(len(real) / rate * FPS)
    recorded = Speech(real[: int(n / FPS * rate)], rate, FPS, n)
    syn = synthesize(
        "Thanks for joining. Here is what changed this week, and why it matters. "
        "First, the numbers. Then, what we do next."
    )
    g = gcd(rate, syn.sample_rate)
    x = resample_poly(syn.samples, rate // g, syn.sample_rate // g).astype(np.float32)
    m = int(len(x) / rate * FPS)
    draft = Speech(x[: int(m / FPS * rate)], rate, FPS, m, syn.phonemes)
    real_mean = mouth_curves(recorded).open[_speaking(recorded)].mean()
    draft_mean = mouth_curves(draft).open[_speaking(draft)].mean()
    assert 0.85 <= draft_mean / real_mean <= 1.15
