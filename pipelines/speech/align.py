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

Memory: a full cost matrix is never built. When rows x columns exceed 2 million cells, both feature sequences
are halved (frame pairs averaged), aligned recursively, and the coarse path is projected back with a search
radius of 20 frames at every level (multi-resolution DTW, as in FastDTW). Memory is O((rows + columns) x radius)
bytes of back-pointers: about 20 MB for an hour of speech; time is linear in the length.

Limit: a pause or a stretch of speech that is out of place by more than the radius at the coarse level the path
was found on (2 million cells ~ 23 s x 23 s at 10 ms, so ~20 s of speech at full resolution, then coarser) is
found at the coarse level, where every frame averages more time; the refinement then corrects the boundaries
within +-20 frames of each level. Recordings that differ from the script (skipped or added sentences) get
boundaries that are only as good as the neighbouring audio allows: DTW has no notion of "not in the script".
"""

from __future__ import annotations

import numpy as np

from pipelines.errors import InputError
from pipelines.speech.track import TimedUnit
from pipelines.speech.tts import SILENCE, synthesize

HOP_S = 0.010
WINDOW_S = 0.025
N_MELS = 40
N_CEPS = 12
MAX_STEP = 3
FULL_CELLS = 2_000_000
RADIUS = 20
# Penalties in units of the standardised feature distance (typical frame distances are ~2..6).
_HOLD_PENALTY = 0.15
_SKIP_PENALTY = 0.3
_PAD_S = 0.3


def align_script(
    samples: np.ndarray, sample_rate: int, text: str, voice: str = "en"
) -> tuple[tuple[TimedUnit, ...], tuple[TimedUnit, ...]]:
    """Phoneme and word timings of `text` as spoken in the recording (mono float samples, seconds)."""
    recording = np.asarray(samples, dtype=np.float32).reshape(-1)
    if recording.size < int(0.1 * sample_rate):
        raise InputError(None, "audio", "expected at least 0.1 s of recorded speech to align the script to")
    synth = synthesize(text, voice=voice)
    # Silence around the synthetic speech gives the recording's leading/trailing silence something to match,
    # so the first word is not pinned to t=0. A faint fixed dither keeps the log features of silence finite.
    pad = int(round(_PAD_S * synth.sample_rate))
    dither = np.random.default_rng(0).normal(0.0, 1e-4, len(synth.samples) + 2 * pad).astype(np.float32)
    padded = np.concatenate([np.zeros(pad, np.float32), synth.samples, np.zeros(pad, np.float32)]) + dither
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
    return phonemes, words


def spectral_features(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(n_frames, N_CEPS + 1) standardised cepstra + log energy, one frame per HOP_S from t=0."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    win = max(int(round(WINDOW_S * sample_rate)), 16)
    n_fft = 1 << int(np.ceil(np.log2(win)))
    n_frames = max(int(np.ceil(len(x) / (HOP_S * sample_rate))), 1)
    starts = np.round(np.arange(n_frames) * HOP_S * sample_rate).astype(np.int64)
    padded = np.concatenate([x, np.zeros(win)])
    window = np.hanning(win)
    fbank = _mel_filterbank(sample_rate, n_fft)
    dct = _dct_matrix(N_MELS, N_CEPS + 1)
    out = np.empty((n_frames, N_CEPS + 1))
    for c0 in range(0, n_frames, 4096):
        idx = starts[c0 : c0 + 4096, None] + np.arange(win)[None, :]
        frames = padded[idx] * window
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


def _windowed_dtw(rows: np.ndarray, cols: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    n_rows, n_cols = len(rows), len(cols)
    offsets = np.concatenate([[0], np.cumsum(hi - lo)])
    back = np.zeros(int(offsets[-1]), dtype=np.int8)
    penalty = np.array([_HOLD_PENALTY] + [0.0] + [_SKIP_PENALTY * s for s in range(1, MAX_STEP)])

    cost0 = np.sqrt(((cols[lo[0] : hi[0]] - rows[0]) ** 2).sum(axis=1))
    prev = np.full(hi[0] - lo[0], np.inf)
    prev[0] = cost0[0]  # the path starts at (0, 0)
    prev_lo, prev_hi = int(lo[0]), int(hi[0])
    for i in range(1, n_rows):
        a, b = int(lo[i]), int(hi[i])
        cost = np.sqrt(((cols[a:b] - rows[i]) ** 2).sum(axis=1))
        # Previous row laid out over columns [a - MAX_STEP, b), inf where it has no cells.
        ext = np.full(b - a + MAX_STEP, np.inf)
        s0, s1 = max(prev_lo, a - MAX_STEP), min(prev_hi, b)
        if s1 > s0:
            ext[s0 - (a - MAX_STEP) : s1 - (a - MAX_STEP)] = prev[s0 - prev_lo : s1 - prev_lo]
        width = b - a
        candidates = np.stack(
            [ext[MAX_STEP - s : MAX_STEP - s + width] + penalty[s] for s in range(MAX_STEP + 1)]
        )
        step = candidates.argmin(axis=0)
        prev = cost + candidates[step, np.arange(width)]
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
