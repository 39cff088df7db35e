import re

import numpy as np

from pipelines.compose.captions import (
    LINE_CHARS,
    Cue,
    group_cues,
    speech_regions,
    srt_text,
    timed_tokens,
    vtt_text,
    write_srt,
    write_vtt,
)
from pipelines.speech.track import TimedUnit
from tests.compose_helpers import tone

SRT_BLOCK = re.compile(r"^(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n((?:.+\n?)+)$")
VTT_TIME = re.compile(r"^(\d\d:\d\d:\d\d\.\d\d\d) --> (\d\d:\d\d:\d\d\.\d\d\d)$")


def _seconds(stamp: str) -> float:
    h, m, rest = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(rest)


def _words(text: str, start: float = 0.5, step: float = 0.4) -> tuple[TimedUnit, ...]:
    return tuple(TimedUnit(start + i * step, start + i * step + 0.35, w) for i, w in enumerate(text.split()))


def test_cues_follow_word_timings_and_break_at_sentences():
    words = _words("Hello there. This is a test of the caption timing.")
    tokens, how = timed_tokens(None, words, np.zeros(0, np.float32), 16000)
    cues = group_cues(tokens, duration=10.0)
    assert how == "words"
    assert [c.text for c in cues] == ["Hello there.", "This is a test of the caption timing."]
    assert cues[0].start == words[0].start and cues[1].start == words[2].start
    assert cues[1].end == round(words[-1].end, 3)
    assert cues[0].end <= cues[1].start


def test_script_text_replaces_aligned_labels_and_is_mapped_when_counts_differ():
    words = _words("hello world how are you")
    tokens, _ = timed_tokens("Hello, world! How are you?", words, np.zeros(0, np.float32), 16000)
    assert [t.label for t in tokens] == ["Hello,", "world!", "How", "are", "you?"]
    assert tokens[2].start == words[2].start
    tokens, _ = timed_tokens("Twenty-one is 21", _words("twenty one is twenty one"), np.zeros(0), 16000)
    assert len(tokens) == 3 and tokens[0].start == 0.5 and tokens[-1].end == _words("a b c d e")[-1].end


def test_without_alignment_words_are_spread_over_the_detected_speech_only():
    rate = 16000
    samples = tone(6.0, rate, gaps=((0.0, 1.0), (3.0, 4.0), (5.5, 6.0)))
    regions = speech_regions(samples, rate)
    assert len(regions) == 2
    assert abs(regions[0][0] - 1.0) < 0.05 and abs(regions[1][1] - 5.5) < 0.05
    tokens, how = timed_tokens("uno due tre quattro cinque sei sette otto", (), samples, rate)
    assert how == "speech-energy"
    for tok in tokens:
        mid = (tok.start + tok.end) / 2
        assert any(a - 0.01 <= mid <= b + 0.01 for a, b in regions)
    assert tokens[0].start >= 0.95 and tokens[-1].end <= 5.55
    assert timed_tokens(None, (), samples, rate) == ([], "none")
    assert timed_tokens("text", (), np.zeros(rate, np.float32), rate) == ([], "none")


def test_long_text_makes_two_line_cues_within_limits():
    text = " ".join(["parola"] * 60)
    cues = group_cues(_words(text, step=0.3), duration=30.0)
    assert len(cues) > 3
    for cue in cues:
        lines = cue.text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= LINE_CHARS for line in lines)
        assert cue.end - cue.start <= 6.0 + 1e-6


def test_srt_format(tmp_path):
    cues = [Cue(0.5, 2.25, "Ciao a tutti,\nbenvenuti."), Cue(3661.001, 3662.5, "Größe & <ok>")]
    path = write_srt(cues, tmp_path / "out.srt")
    text = path.read_text(encoding="utf-8")
    blocks = text.strip("\n").split("\n\n")
    assert len(blocks) == 2
    parsed = [SRT_BLOCK.match(b) for b in blocks]
    assert all(parsed)
    assert [int(p.group(1)) for p in parsed] == [1, 2]
    assert parsed[0].group(2) == "00:00:00,500" and parsed[0].group(3) == "00:00:02,250"
    assert parsed[1].group(2) == "01:01:01,001"
    assert parsed[1].group(4).strip() == "Größe & <ok>"
    assert srt_text([]) == ""


def test_webvtt_format_and_escaping(tmp_path):
    cues = [Cue(0.5, 2.25, "Ciao a tutti,\nbenvenuti."), Cue(3.0, 4.0, "a --> b & <c>")]
    text = write_vtt(cues, tmp_path / "out.vtt").read_text(encoding="utf-8")
    assert text.startswith("WEBVTT\n\n")
    blocks = text[len("WEBVTT\n\n") :].strip("\n").split("\n\n")
    assert len(blocks) == 2
    first = blocks[0].split("\n")
    m = VTT_TIME.match(first[0])
    assert m and _seconds(m.group(1)) == 0.5 and _seconds(m.group(2)) == 2.25
    assert first[1:] == ["Ciao a tutti,", "benvenuti."]
    assert blocks[1].split("\n")[1] == "a --&gt; b &amp; &lt;c&gt;"
    assert "-->" not in blocks[1].split("\n")[1]
    assert vtt_text([]) == "WEBVTT\n\n"


def test_burnt_in_cues_fit_the_panel_and_keep_every_word():
    from pipelines.compose.captions import line_chars_for
    from pipelines.compose.fonts import load_font

    font = load_font(None, 23)  # the caption size on a 512 px output
    width = int(512 * 0.84)
    text = (
        "No. The preview engine runs on any laptop, without a graphics card. When you want studio quality, "
        "switch the engine to latent sync and render on a GPU."
    )
    words = text.split()
    tokens = [TimedUnit(i * 0.3, i * 0.3 + 0.25, w) for i, w in enumerate(words)]
    cues = group_cues(tokens, len(words) * 0.3, line_chars_for(font, width))
    assert " ".join(c.text.replace("\n", " ") for c in cues).split() == words
    for cue in cues:
        lines = cue.text.split("\n")
        assert len(lines) <= 2
        assert all(font.getlength(line) <= width for line in lines), lines
