import numpy as np
import pytest

from pipelines.errors import InputError
from pipelines.speech.tts import SILENCE, available_voices, synthesize

TEXT = "Hello world, this is a draft of the intro. It costs 42 dollars."


def test_duration_is_plausible_and_audio_is_not_silent():
    s = synthesize(TEXT)
    n_words = len(TEXT.split())
    # espeak's default 175 words per minute, plus clause pauses: between 100 and 300 wpm overall.
    assert n_words / 300 * 60 < s.duration < n_words / 100 * 60
    assert s.samples.dtype == np.float32
    assert 0.05 < np.abs(s.samples).max() <= 1.0
    assert s.sample_rate == 22050


def test_phonemes_are_contiguous_and_cover_the_speech():
    s = synthesize(TEXT)
    ph = s.phonemes
    assert len(ph) > 30
    assert ph[0].start == 0.0
    assert ph[-1].end == pytest.approx(s.duration, abs=1e-6)
    for a, b in zip(ph, ph[1:], strict=False):
        assert a.end == pytest.approx(b.start)
        assert a.start < a.end
    labels = [p.label for p in ph]
    assert SILENCE in labels  # the comma and the full stop pause
    assert not any(label.startswith(("'", ",")) for label in labels)
    # Speech, not pauses, fills most of the time.
    speaking = sum(p.end - p.start for p in ph if p.label != SILENCE)
    assert speaking > 0.7 * s.duration


def test_words_match_the_text_in_order_and_sit_on_the_phonemes():
    s = synthesize(TEXT)
    assert [w.label for w in s.words] == [w.strip(",.") for w in TEXT.split()]
    for a, b in zip(s.words, s.words[1:], strict=False):
        assert a.start < a.end <= b.start
    for w in s.words:
        mid = 0.5 * (w.start + w.end)
        under = [p for p in s.phonemes if p.start <= mid < p.end]
        assert under and under[0].label != SILENCE
        # A word spans voiced audio: its loudest 10 ms is well above silence.
        seg = s.samples[int(w.start * s.sample_rate) : int(w.end * s.sample_rate)]
        assert np.abs(seg).max() > 0.02


def test_non_ascii_words_keep_their_spelling():
    s = synthesize("Café naïve, déjà vu.")
    assert [w.label for w in s.words] == ["Café", "naïve", "déjà", "vu"]


def test_words_espeak_folds_together_still_get_their_own_span():
    # espeak speaks "of the" as one dictionary entry and "1234" as several words.
    s = synthesize("The end of the day is at 1234 hours.")
    assert [w.label for w in s.words] == ["The", "end", "of", "the", "day", "is", "at", "1234", "hours"]
    for a, b in zip(s.words, s.words[1:], strict=False):
        assert a.start < a.end <= b.start


def test_rate_changes_duration():
    slow = synthesize(TEXT, rate_wpm=120)
    fast = synthesize(TEXT, rate_wpm=260)
    assert slow.duration > 1.6 * fast.duration


def test_same_input_gives_same_output_whatever_came_before():
    first = synthesize(TEXT, voice="en+f3")
    synthesize("Something else entirely, loud and long!", voice="en-us", rate_wpm=300, pitch=90)
    again = synthesize(TEXT, voice="en+f3")
    assert np.array_equal(first.samples, again.samples)
    assert first.phonemes == again.phonemes and first.words == again.words


def test_concurrent_calls_are_serialised_and_identical():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: synthesize("Four threads at once."), range(4)))
    for r in results[1:]:
        assert np.array_equal(r.samples, results[0].samples) and r.words == results[0].words


def test_other_languages():
    s = synthesize("Guten Morgen", voice="de")
    assert [w.label for w in s.words] == ["Guten", "Morgen"]
    assert "de" in available_voices()


@pytest.mark.parametrize("voice", ["xx-nonexistent", "en+nosuchvariant", "en+../../etc"])
def test_unknown_voice_is_a_clear_input_error(voice):
    with pytest.raises(InputError) as info:
        synthesize("hello", voice=voice)
    message = str(info.value)
    assert info.value.field == "audio.voice"
    assert repr(voice) in message and "en-us" in message


def test_bad_text_and_rate_are_input_errors():
    with pytest.raises(InputError):
        synthesize("   ")
    with pytest.raises(InputError):
        synthesize("hello", rate_wpm=20)
