"""Phoneme and word timing for a recorded voice reading a known script, without model weights.

Method: synthesise the script with espeak-ng (`tts.synthesize`, which reports exact phoneme and word times),
compute the same spectral features for the synthetic and the recorded speech, find the monotonic frame
correspondence between them by dynamic time warping, and carry every synthetic boundary through it.

Features (our own numpy code, computed at each signal's own sample rate so nothing is resampled): 25 ms Hann
windows every 10 ms, a 40-band mel filterbank from 60 Hz to min(7.6 kHz, Nyquist), log, DCT; cepstra 1..12
(timbre, insensitive to loudness and mostly to pitch) plus the frame's log energy, each standardised over its own
utterance so two different voices land on comparable scales.

DTW: rows are recording frames, columns synthetic frames; each recording frame is matched to exactly one
synthetic frame and from one row to the next the synthetic index advances by 0..3 frames. So the recording may
hold a sound (or a pause the script does not have) as long as it likes, and may be up to 3x faster than espeak
locally. Staying and skipping cost a small penalty so that a straight path wins ties. Both ends are anchored
(first frames together, last frames together); leading and trailing silence are absorbed by the hold step.

Memory: a full cost matrix is never built beyond 500 thousand cells (~7 s x 7 s at 10 ms frames). Longer
inputs are halved (frame pairs averaged) until they fit, aligned there in full, and the coarse path is projected
back one level at a time and refined inside a band of +-20 frames around it (multi-resolution DTW, as in
FastDTW). Memory per level is (rows x band) one-byte back-pointers and float32 costs, ~300 bytes per 10 ms of
recording (traced peak of the DTW: 24 MiB for 1 minute, 50 MiB for 20 minutes); time is linear in the length.
Features are computed in chunks.

Limits: the global path is decided at the coarsest level (for 10 minutes of speech, frames of ~0.3 s), so a
recording whose order differs from the script, or that adds or skips whole sentences, is mapped only as well as
the neighbouring audio allows: DTW has no notion of "not in the script". Within a level, boundaries move at most
20 frames away from the coarse path. The recording may be at most 3x faster than espeak locally.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.errors import InputError
from pipelines.speech.track import TimedUnit
from pipelines.speech.tts import SILENCE, synthesize

HOP_S = 0.010
WINDOW_S = 0.025
N_MELS = 40
N_CEPS = 12
MAX_STEP = 3
FULL_CELLS = 500_000
RADIUS = 20
# Penalties in units of the standardised feature distance (typical frame distances are ~2..6).
_HOLD_PENALTY = 0.15
_SKIP_PENALTY = 0.3
_PAD_S = 0.3
# A script that matches its recording keeps espeak's word rhythm up to one tempo. Measured on an 11-word script:
# other espeak voices at 0.65x..1.65x speed had 0-9 % of words off by more than 2x from espeak's duration (after
# the global tempo), German espeak reading the English text 18 %; recordings of other sentences had 36-55 % (DTW
# stretches some words over seconds and squeezes others), one that shares only its first four words 9 %.
# Above this share (with at least MIN_WORDS words) the alignment is reported as poor; it is a heuristic.
POOR_ALIGNMENT_SPREAD = 0.3
MIN_WORDS = 4


@dataclass(frozen=True)
class ScriptAlignment:
    phonemes: tuple[TimedUnit, ...]
    words: tuple[TimedUnit, ...]
    spread: (
        float  # share of words whose duration is off by more than 2x from espeak's, after the global tempo
    )

    @property
    def poor(self) -> bool:
        return len(self.words) >= MIN_WORDS and self.spread > POOR_ALIGNMENT_SPREAD

    def warning(self) -> str | None:
        if not self.poor:
            return None
        longest = max(self.words, key=lambda w: w.end - w.start)
        return (
            f"the script does not seem to match the recording ({self.spread:.0%} of its words would last over "
            f"2x or under half their usual time; {longest.label!r} {longest.end - longest.start:.1f} s): "
            "captions and mouth shapes may be off; check `script:`"
        )


def word_timing_spread(reference: tuple[TimedUnit, ...], aligned: tuple[TimedUnit, ...]) -> float:
    """The share of words whose aligned duration, over the global tempo, is more than 2x or less than half
    of espeak's (0 = espeak's rhythm up to one tempo)."""
    ref = np.array([max(w.end - w.start, 0.02) for w in reference])
    got = np.array([max(w.end - w.start, 0.02) for w in aligned])
    if len(ref) != len(got) or not len(ref):
        return 0.0
    tempo = got.sum() / ref.sum()
    return float(np.mean(np.abs(np.log(got / ref / tempo)) > np.log(2.0)))


def align_script(
    samples: np.ndarray, sample_rate: int, text: str, voice: str = "en"
) -> tuple[tuple[TimedUnit, ...], tuple[TimedUnit, ...]]:
    """Phoneme and word timings of `text` as spoken in the recording (mono float samples, seconds)."""
    found = script_alignment(samples, sample_rate, text, voice)
    return found.phonemes, found.words


def script_alignment(samples: np.ndarray, sample_rate: int, text: str, voice: str = "en") -> ScriptAlignment:
    """align_script's timings, and how well the script's rhythm fits the recording (`poor`, `warning()`)."""
    recording = np.asarray(samples, dtype=np.float32).reshape(-1)
    if recording.size < int(0.1 * sample_rate):
        raise InputError(None, "audio", "expected at least 0.1 s of recorded speech to align the script to")
    synth = synthesize(text, voice=voice)
    # Silence around the synthetic speech gives the recording's leading/trailing silence something to match,
    # so the first word is not pinned to t=0. A faint fixed dither keeps the log features of silence finite.
    pad = int(round(_PAD_S * synth.sample_rate))
    padded = np.concatenate([np.zeros(pad, np.float32), synth.samples, np.zeros(pad, np.float32)])
    padded += np.random.default_rng(0).standard_normal(len(padded), dtype=np.float32) * np.float32(1e-4)
    rec_feats = spectral_features(recording, sample_rate)
    syn_feats = spectral_features(padded, synth.sample_rate)
    if synth.duration > MAX_STEP * len(recording) / sample_rate:
        raise InputError(
            None,
            "audio",
            f"the recording ({len(recording) / sample_rate:.1f} s) is too short for its script "
            f"(espeak reads it in {synth.duration:.1f} s; expected at most {MAX_STEP}x faster)",
        )
    path = dtw_path(rec_feats, syn_feats)
    duration = len(recording) / sample_rate
    to_rec = _time_map(path, duration)
    offset = pad / synth.sample_rate
    phonemes = _map_units(synth.phonemes, lambda t: to_rec(t + offset), duration, keep_empty=False)
    words = _map_units(synth.words, lambda t: to_rec(t + offset), duration, keep_empty=True)
    return ScriptAlignment(phonemes, words, word_timing_spread(synth.words, words))


def spectral_features(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(n_frames, N_CEPS + 1) standardised cepstra + log energy, one frame per HOP_S from t=0."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    win = max(int(round(WINDOW_S * sample_rate)), 16)
    n_fft = 1 << int(np.ceil(np.log2(win)))
    n_frames = max(int(np.ceil(len(x) / (HOP_S * sample_rate))), 1)
    starts = np.round(np.arange(n_frames) * HOP_S * sample_rate).astype(np.int64)
    # Zeros past the end without copying the whole signal.
    padded = np.concatenate([x, np.zeros(win, np.float32)]) if len(x) < win else x
    window = np.hanning(win)
    fbank = _mel_filterbank(sample_rate, n_fft)
    dct = _dct_matrix(N_MELS, N_CEPS + 1)
    out = np.empty((n_frames, N_CEPS + 1))
    for c0 in range(0, n_frames, 4096):
        idx = starts[c0 : c0 + 4096, None] + np.arange(win)[None, :]
        inside = idx < len(padded)
        frames = np.where(inside, padded[np.minimum(idx, len(padded) - 1)], 0.0) * window
        power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
        log_mel = np.log(power @ fbank.T + 1e-8)
        ceps = log_mel @ dct.T
        out[c0 : c0 + 4096, :N_CEPS] = ceps[:, 1:]
        out[c0 : c0 + 4096, N_CEPS] = np.log(power.sum(axis=1) + 1e-8)
    out -= out.mean(axis=0)
    out /= out.std(axis=0) + 1e-6
    return out.astype(np.float32)


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def _mel_filterbank(sample_rate: int, n_fft: int) -> np.ndarray:
    fmax = min(7600.0, sample_rate / 2.0)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(60.0), _hz_to_mel(fmax), N_MELS + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-9)
    bank = np.clip(np.minimum(rising, falling), 0.0, None)
    # Bands narrower than one FFT bin (low sample rates) still get their nearest bin.
    empty = bank.sum(axis=1) == 0
    if empty.any():
        nearest = np.abs(freqs[None, :] - centre[empty]).argmin(axis=1)
        bank[np.flatnonzero(empty), nearest] = 1.0
    return bank


def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    return np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_in))


def dtw_path(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """For each row frame, the column frame it is matched to (non-decreasing, steps 0..MAX_STEP)."""
    n_rows, n_cols = len(rows), len(cols)
    if n_rows * n_cols <= FULL_CELLS or min(n_rows, n_cols) < 4 * RADIUS:
        lo = np.zeros(n_rows, dtype=np.int64)
        hi = np.full(n_rows, n_cols, dtype=np.int64)
        return _windowed_dtw(rows, cols, lo, hi)
    coarse = dtw_path(_halve(rows), _halve(cols))
    lo, hi = _project(coarse, n_rows, n_cols)
    return _windowed_dtw(rows, cols, lo, hi)


def _halve(x: np.ndarray) -> np.ndarray:
    n = len(x) // 2 * 2
    out = 0.5 * (x[:n:2] + x[1:n:2])
    if len(x) % 2:
        out = np.concatenate([out, x[-1:]])
    return out


def _project(coarse: np.ndarray, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    fine_rows = np.minimum(np.arange(n_rows) // 2, len(coarse) - 1)
    # Neighbouring coarse rows too, so the window follows the path where it turns.
    prev_rows = np.maximum(fine_rows - 1, 0)
    next_rows = np.minimum(fine_rows + 1, len(coarse) - 1)
    lo = 2 * np.minimum(coarse[fine_rows], coarse[prev_rows]) - RADIUS
    hi = 2 * np.maximum(coarse[fine_rows], coarse[next_rows]) + 2 + RADIUS
    lo = np.maximum.accumulate(np.clip(lo, 0, n_cols - 1))
    hi = np.minimum.accumulate(np.clip(hi, 1, n_cols)[::-1])[::-1]
    lo[0] = 0
    hi[-1] = n_cols
    hi = np.maximum(hi, lo + 1)
    return lo.astype(np.int64), hi.astype(np.int64)


def _window_costs(rows: np.ndarray, cols: np.ndarray, lo: np.ndarray, hi: np.ndarray, offsets: np.ndarray):
    """Euclidean frame distances of every cell in the window, flattened row by row (in chunks of rows)."""
    costs = np.empty(int(offsets[-1]), dtype=np.float32)
    for r0 in range(0, len(rows), 2048):
        r1 = min(r0 + 2048, len(rows))
        r = np.repeat(np.arange(r0, r1), hi[r0:r1] - lo[r0:r1])
        cells = np.arange(offsets[r0], offsets[r1])
        diff = rows[r] - cols[lo[r] + (cells - offsets[r])]
        costs[offsets[r0] : offsets[r1]] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return costs


def _windowed_dtw(rows: np.ndarray, cols: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    n_rows, n_cols = len(rows), len(cols)
    offsets = np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)
    costs = _window_costs(rows, cols, lo, hi, offsets)
    back = np.zeros(int(offsets[-1]), dtype=np.int8)
    penalty = [_HOLD_PENALTY, 0.0] + [_SKIP_PENALTY * s for s in range(1, MAX_STEP)]

    prev = np.full(hi[0] - lo[0], np.inf)
    prev[0] = costs[0]  # the path starts at (0, 0)
    prev_lo, prev_hi = int(lo[0]), int(hi[0])
    for i in range(1, n_rows):
        a, b = int(lo[i]), int(hi[i])
        width = b - a
        # Previous row laid out over columns [a - MAX_STEP, b), inf where it has no cells.
        ext = np.full(width + MAX_STEP, np.inf)
        s0, s1 = max(prev_lo, a - MAX_STEP), min(prev_hi, b)
        if s1 > s0:
            ext[s0 - (a - MAX_STEP) : s1 - (a - MAX_STEP)] = prev[s0 - prev_lo : s1 - prev_lo]
        best = ext[MAX_STEP:] + penalty[0]
        step = np.zeros(width, dtype=np.int8)
        for s in range(1, MAX_STEP + 1):
            candidate = ext[MAX_STEP - s : MAX_STEP - s + width] + penalty[s]
            better = candidate < best
            best = np.where(better, candidate, best)
            step[better] = s
        prev = costs[offsets[i] : offsets[i + 1]] + best
        back[offsets[i] : offsets[i + 1]] = step
        prev_lo, prev_hi = a, b
    if not np.isfinite(prev[n_cols - 1 - prev_lo]):
        raise InputError(
            None, "audio", "the recording cannot be aligned to its script (no monotonic match found)"
        )
    path = np.empty(n_rows, dtype=np.int64)
    j = n_cols - 1
    for i in range(n_rows - 1, -1, -1):
        path[i] = j
        if i > 0:
            j -= int(back[offsets[i] + j - lo[i]])
    return path


def _time_map(path: np.ndarray, duration: float):
    """Synthetic time (s) -> recording time (s): where the recording first reaches that synthetic frame."""
    first_row = np.searchsorted(path, np.arange(int(path[-1]) + 2), side="left").astype(np.float64)
    first_row[-1] = len(path)

    def to_rec(t: float) -> float:
        pos = min(max(t / HOP_S, 0.0), float(path[-1] + 1))
        k = int(np.floor(pos))
        frac = pos - k
        k1 = min(k + 1, len(first_row) - 1)
        row = first_row[k] * (1.0 - frac) + first_row[k1] * frac
        return min(max(row * HOP_S, 0.0), duration)

    return to_rec


def _map_units(units, to_rec, duration: float, keep_empty: bool) -> tuple[TimedUnit, ...]:
    """Carry units through the time map; phonemes (keep_empty=False) then cover [0, duration] with pauses."""
    out: list[TimedUnit] = []
    last = 0.0
    for unit in units:
        start = max(to_rec(unit.start), last)
        end = max(to_rec(unit.end), start)
        if end <= start:
            if not keep_empty:
                continue
            end = min(start + HOP_S, duration)
        out.append(TimedUnit(start, end, unit.label))
        last = end
    if keep_empty or not out:
        return tuple(out)
    if out[0].start > 0.0:
        out.insert(0, TimedUnit(0.0, out[0].start, SILENCE))
    if out[-1].end < duration:
        out.append(TimedUnit(out[-1].end, duration, SILENCE))
    merged: list[TimedUnit] = []
    for unit in out:
        if merged and unit.label == SILENCE and merged[-1].label == SILENCE:
            unit = TimedUnit(merged.pop().start, unit.end, SILENCE)
        merged.append(unit)
    return tuple(merged)
