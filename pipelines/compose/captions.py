"""Caption cues from the script text and word timings, and their SRT / WebVTT sidecar files.

Timing comes from `Speech.words` (TTS or forced alignment) when there is any; otherwise the script's words are
spread over the detected speech (short-time energy), proportional to their length. Times are seconds on the
clip's own timeline; the composition shifts them by the clip's offset in the output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.speech.track import TimedUnit

LINE_CHARS = 42  # the common broadcast / web subtitle line length
MAX_LINES = 2
MAX_CUE_SECONDS = 6.0
MIN_CUE_SECONDS = 0.8
PAUSE_BREAK = 0.6  # a silence this long between words starts a new cue
SENTENCE_END = (".", "?", "!", "…", "。", "؟", "!")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str  # lines joined by "\n"

    def shifted(self, offset: float) -> Cue:
        return Cue(self.start + offset, self.end + offset, self.text)


def speech_regions(samples: np.ndarray, sample_rate: int, min_gap: float = 0.3) -> list[tuple[float, float]]:
    """Spans (seconds) where the short-time energy is above a level relative to the loud parts."""
    hop = max(1, int(sample_rate * 0.02))
    n = len(samples) // hop
    if n == 0:
        return []
    frames = np.asarray(samples[: n * hop], np.float32).reshape(n, hop)  # a view: no copy of the clip
    rms = np.sqrt(np.einsum("ij,ij->i", frames, frames) / hop)
    loud = float(np.percentile(rms, 95))
    if loud < 1e-4:
        return []
    active = rms > max(loud * 0.1, 1e-4)
    regions: list[list[float]] = []
    for i in np.flatnonzero(active):
        t0, t1 = i * hop / sample_rate, (i + 1) * hop / sample_rate
        if regions and t0 - regions[-1][1] <= min_gap:
            regions[-1][1] = t1
        else:
            regions.append([t0, t1])
    return [(a, b) for a, b in regions]


def _spread(tokens: Sequence[str], regions: Sequence[tuple[float, float]]) -> list[TimedUnit]:
    """Tokens in order over the speech regions, proportional to their length, none straddling a pause."""
    lengths = np.array([b - a for a, b in regions])
    weights = np.array([len(t) + 1 for t in tokens], np.float64)
    mids = (np.cumsum(weights) - weights / 2) / weights.sum() * lengths.sum()
    region_of = np.minimum(np.searchsorted(np.cumsum(lengths), mids), len(regions) - 1)
    out: list[TimedUnit] = []
    for r, (a, b) in enumerate(regions):
        members = np.flatnonzero(region_of == r)
        if len(members) == 0:
            continue
        w = weights[members]
        edges = a + np.concatenate([[0.0], np.cumsum(w)]) / w.sum() * (b - a)
        out.extend(TimedUnit(float(edges[i]), float(edges[i + 1]), tokens[m]) for i, m in enumerate(members))
    return out


def timed_tokens(
    script_text: str | None, words: Sequence[TimedUnit], samples: np.ndarray, sample_rate: int
) -> tuple[list[TimedUnit], str]:
    """The displayed words with times, and how they were timed ('words', 'speech-energy' or 'none')."""
    tokens = script_text.split() if script_text else [w.label for w in words]
    if not tokens:
        return [], "none"
    if words:
        if len(tokens) == len(words):
            return [TimedUnit(w.start, w.end, t) for w, t in zip(words, tokens, strict=True)], "words"
        # The aligner may split or merge tokens differently (numbers, hyphens): map by relative position.
        nw, nt = len(words), len(tokens)
        out = []
        for i, tok in enumerate(tokens):
            j0 = min(nw - 1, i * nw // nt)
            j1 = max(j0, min(nw - 1, math.ceil((i + 1) * nw / nt) - 1))
            out.append(TimedUnit(words[j0].start, words[j1].end, tok))
        return out, "words"
    regions = speech_regions(samples, sample_rate)
    if not regions:
        return [], "none"
    return _spread(tokens, regions), "speech-energy"


def _lines(text: str, line_chars: int = LINE_CHARS) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > line_chars:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current] if current else lines


def line_chars_for(font, width: int) -> int:
    """How many characters of ordinary text fit on one burnt-in caption line of `width` pixels in `font`."""
    sample = "the quick brown fox jumps over a lazy dog "
    return max(8, min(LINE_CHARS, int(0.9 * width * len(sample) / font.getlength(sample))))


def group_cues(tokens: Sequence[TimedUnit], duration: float, line_chars: int = LINE_CHARS) -> list[Cue]:
    """Words -> cues of at most two lines of `line_chars` / six seconds, broken at sentence ends and pauses."""
    groups: list[list[TimedUnit]] = []
    for tok in tokens:
        if groups:
            group = groups[-1]
            candidate = " ".join(t.label for t in group) + " " + tok.label
            too_long = (
                len(_lines(candidate, line_chars)) > MAX_LINES or tok.end - group[0].start > MAX_CUE_SECONDS
            )
            paused = tok.start - group[-1].end >= PAUSE_BREAK
            ended = group[-1].label.endswith(SENTENCE_END)
            comma_break = group[-1].label.endswith((",", ";", ":", "،")) and len(candidate) > line_chars
            if not (too_long or paused or ended or comma_break):
                group.append(tok)
                continue
        groups.append([tok])
    cues: list[Cue] = []
    for i, group in enumerate(groups):
        start = max(0.0, group[0].start)
        limit = groups[i + 1][0].start if i + 1 < len(groups) else duration
        end = min(max(group[-1].end, start + MIN_CUE_SECONDS), limit, duration)
        if end <= start:
            continue
        text = "\n".join(_lines(" ".join(t.label for t in group), line_chars))
        cues.append(Cue(round(start, 3), round(end, 3), text))
    return cues


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt_text(cues: Sequence[Cue]) -> str:
    blocks = [
        f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{c.text}\n" for i, c in enumerate(cues, 1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt_text(cues: Sequence[Cue]) -> str:
    blocks = [f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n{_vtt_escape(c.text)}\n" for c in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)


def write_srt(cues: Sequence[Cue], path: Path) -> Path:
    path.write_text(srt_text(cues), encoding="utf-8")
    return path


def write_vtt(cues: Sequence[Cue], path: Path) -> Path:
    path.write_text(vtt_text(cues), encoding="utf-8")
    return path
