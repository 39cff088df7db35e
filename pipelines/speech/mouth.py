"""Per-frame mouth motion from speech: opening, width, rounding and lip closure.

`mouth_curves(speech)` returns a `MouthTrack` with one value per video frame for each of
open (0..1), width (-1..1), round (0..1), closure (0..1) — see `visemes.py` for what each number means.
The curves are what the engines animate and what QC and tests read.

Method
------
Everything is first computed on a 5 ms grid, then averaged over each video frame's interval
[k / fps, (k + 1) / fps), then rate-limited.

With phoneme timing (draft text speech, or a script aligned to a recording):
1. every phoneme becomes its viseme's target shape over its time span (diphthongs glide start -> end);
2. coarticulation: targets are blended with a Gaussian kernel over time (sigma 20 ms), weighted by each
   viseme's dominance, i.e. blended = (K * (w T)) / (K * w). Bilabials (dominance 2.5) still reach closure when
   they last only ~60 ms; alveolars and velars mostly take the shape of the vowels around them. The kernel
   reaches before a phoneme as well as after it, which gives the anticipatory attack and the release.
3. the jaw (below), then the phoneme opening scaled per speech (capped at 1) so its 90th percentile over the
   voiced grid points is PHONEME_OPEN_P90, what the signal curve gives real recordings (0.83-0.87 over the four at
   hand, the real talking-head clip's own speech 0.865). The scale had been a constant 2.0, measured against the
   signal curve of espeak's own audio: espeak's flat synthetic loudness envelope puts that curve's 90th
   percentile at 0.65-0.71 on six texts, so drafts opened like their synthetic audio rather than like a speaker
   (the bench's draft text 0.81x the real speaker's mean opening at the curve level). Per speech, as the signal
   curve scales each recording to its own loud level: the blended visemes' 90th percentile varies 0.35-0.52 with
   the text (1.6-2.4x to reach the target), so one constant left vowel-poor texts small.

From the signal alone (no phoneme timing):
1. RMS level (25 ms window) in dB. A noise floor gate: the gate is 8 dB above the 10th percentile level, kept
   between 45 dB and 20 dB below the loud (95th percentile) level and never below -65 dBFS; voice activity is
   level above the gate, extended 40 ms before and 80 ms after (the mouth opens just before the sound and
   closes after it), and dropouts shorter than 40 ms bridged.
2. opening = ((level - (loud - 30 dB)) / 30 dB) ** 1.3 inside voice activity, 0 outside: silences and pauses
   close the mouth; consonants, 10..20 dB under the vowels, open it a little.
3. spectral centroid (100 Hz .. 5 kHz, log scale) against its median over the voiced frames: darker than usual
   -> rounder and narrower lips (oo, oh), brighter -> spread (ee, s); +-1.2 octaves is full scale, capped at 0.7.
4. bilabial-like closures: a dip in the level of 30..160 ms inside speech, at least 18 dB under the loud parts
   around it, that ends in a sharp rise (>= 12 dB within 20 ms, a release burst), gets a closure over the dip:
   1 from 60 ms on (as measured), partly for shorter dips (most of those are /t d k g/ or fast short stops).
   The signal cannot tell /p b/ from /t k/ reliably; this is the "where the signal shows them" compromise.
5. Gaussian smoothing (sigma 25 ms; the closure, a lip gesture, 35 ms: a 10-90 % closing in ~90 ms), then the
   jaw (below). Closures smoothed like the rest (25 ms) shut the lips from a wide opening within a frame: the
   fastest recording at hand (LatentSync's demo audio) then changed 1.25x faster per frame than the real speaker,
   1.11x with 35 ms.

The jaw: the opening alone is smoothed again by a symmetric Gaussian (sigma 80 ms for phonemes, 70 ms for the
signal), as a heavy, slow jaw moves: between two vowels a short consonant narrows the mouth instead of shutting
it, the mouth closes over ~150 ms after the sound, and the peaks stay at lag 0 (a
one-sided filter would delay them). Without it the curves changed ~1.8x faster, relative to their mean, than a
real speaker's mouth measured on a real talking-head clip (LatentSync's demo video; change per frame over mean opening: 0.25 against
0.14); with it (and the signal's lip closures of step 5) the four real recordings at hand give 0.11-0.14 (mean
0.12). Before the sound, the mouth only pre-shapes (PRE_OPEN). Lips stay fast: closure is not smoothed again, and the opening is then capped by 1 - closure, so bilabials still shut the lips and pressed
lips are never drawn apart. Last, the voice-activity gate (signal step 1, smoothed over 20 ms) scales opening, width
and rounding, so the mouth is closed wherever the audio is silent, even if an alignment put a phoneme there.

Smoothness: after averaging per frame, each curve's change per frame is limited to 12 units per second of its
range (0.48 per frame at 25 fps) by a forward and a backward slew limiter, averaged so no lag is added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.speech.track import Speech
from pipelines.speech.visemes import viseme_for

PARAMS = ("open", "width", "round", "closure")
# The inner-lip gap (in pupil distances, as pipelines.qc.measure gives it) that one unit of `open` stands for,
# for engines that draw an absolute opening (the preview's photos). Measured on a real talking-head clip
# (LatentSync's demo video): its speaker's mean gap while speaking (0.187) over the mean of the signal curve of
# its own speech (0.51).
OPEN_GAP = 0.36
GRID_HZ = 200
MAX_CHANGE_PER_S = 12.0
_PHONEME_SIGMA_S = 0.020
_SIGNAL_SIGMA_S = 0.025
_LIP_SIGMA_S = 0.035  # the signal's closures (module docstring, signal step 5)
# The phoneme opening's 90th percentile over the voiced grid points, per speech (module docstring, phonemes step 3):
# the signal curve's on real recordings. The scale that reaches it is kept within _PHONEME_GAIN_RANGE, so a
# speech of only closed sounds (a hum, "mm") is not blown up to a vowel's opening.
PHONEME_OPEN_P90 = 0.85
_PHONEME_GAIN_RANGE = (1.0, 3.0)
_JAW_SIGMA_S = {"phonemes": 0.080, "signal": 0.070}  # the jaw's smoothing (module docstring)
_WINDOW_S = 0.025
_HANGOVER_S = (0.040, 0.080)  # before and after each run of voice activity
_MIN_GAP_S = 0.040
_GATE_ABOVE_FLOOR_DB = 8.0
_GATE_RANGE_DB = (45.0, 20.0)
_ABS_FLOOR_DB = -65.0
_DIP_S = (0.030, 0.160)
# Dips shorter than this close the lips only partly (closure from 0 at the shortest dip to 1 here): most are /t d k g/ or a fast
# speaker's short stops, where lips do not shut; a bilabial's closure lasts ~70-120 ms. With every dip of
# 30 ms and more shutting the lips fully, the fastest recording at hand (LatentSync's demo audio) changed 1.2x
# faster relative to its mean opening than the real speaker, nearly all from those slams (0.166 against 0.115
# without any closure).
_FULL_CLOSURE_DIP_S = 0.060
_DIP_DEPTH_DB = 18.0
_BURST_RISE_DB = 12.0
_BURST_S = 0.020
_CENTROID_BAND = (100.0, 5000.0)
_CENTROID_SCALE_OCT = 1.2
_SHAPE_CAP = 0.7
_OPEN_RANGE_DB = 30.0
# Before each onset (the first moment the sound reaches the opening range, loud - _OPEN_RANGE_DB) the mouth may
# only pre-shape: its opening stays under this (0.08 x OPEN_GAP = 0.03 pupil distances, under the gap QC still
# calls closed; 0.08 of the widest, under what a mouth library counts as closed). The jaw's symmetric smoothing
# and the voice-activity pre-roll opened it a frame before each sentence, which read as an open mouth in the
# pause. After the sound the mouth closes freely (over _RELEASE_S at most).
PRE_OPEN = 0.08
_RELEASE_S = 0.25


@dataclass(frozen=True)
class MouthTrack:
    """Mouth parameters per video frame; each array has shape (n_frames,) and dtype float32."""

    open: np.ndarray
    width: np.ndarray
    round: np.ndarray
    closure: np.ndarray
    fps: float
    n_frames: int
    source: str  # "phonemes" or "signal"

    def stacked(self) -> np.ndarray:
        """(n_frames, 4) in PARAMS order."""
        return np.stack([self.open, self.width, self.round, self.closure], axis=1)


def mouth_curves(speech: Speech) -> MouthTrack:
    n_grid = max(int(np.ceil(speech.duration * GRID_HZ)), 1)
    level_db = _levels(speech.samples, speech.sample_rate, n_grid)
    active, gate, loud = _voice_activity(level_db)
    presence = _gaussian_smooth(active.astype(np.float64), _PHONEME_SIGMA_S * GRID_HZ)
    if speech.phonemes:
        raw = _phoneme_targets(speech, n_grid)
        source = "phonemes"
    else:
        centroid = _centroids(speech.samples, speech.sample_rate, n_grid)
        raw = _signal_targets(level_db, centroid, active, gate, loud)
        sigmas = (_SIGNAL_SIGMA_S,) * 3 + (_LIP_SIGMA_S,)
        raw = np.stack([_gaussian_smooth(raw[:, i], s * GRID_HZ) for i, s in enumerate(sigmas)], axis=1)
        source = "signal"
    raw[:, 0] = _gaussian_smooth(raw[:, 0], _JAW_SIGMA_S[source] * GRID_HZ)
    if source == "phonemes":
        raw[:, 0] = np.minimum(raw[:, 0] * _phoneme_gain(raw[:, 0], active), 1.0)
    raw[:, 0] = np.minimum(raw[:, 0], 1.0 - raw[:, 3])
    raw[:, :3] *= presence[:, None]
    sounding = _hangover(level_db >= loud - _OPEN_RANGE_DB, 0, int(round(_RELEASE_S * GRID_HZ)))
    raw[:, 0] = np.where(sounding, raw[:, 0], np.minimum(raw[:, 0], PRE_OPEN))
    frames = _per_frame(np.concatenate([raw, sounding[:, None]], axis=1), speech.fps, speech.n_frames)
    limit = MAX_CHANGE_PER_S / speech.fps
    curves = [_slew_limit(frames[:, i], limit) for i in range(4)]
    # the limiter's backward pass would open a frame before an onset again: such frames (no sound in them)
    # are capped, then only the rise after them is limited (forward: it lags the onset, never leads it)
    quiet = frames[:, 4] <= 0.0
    curves[0] = _rise_limit(np.where(quiet, np.minimum(curves[0], PRE_OPEN), curves[0]), limit)
    lo = np.array([0.0, -1.0, 0.0, 0.0])
    curves = [np.clip(c, lo[i], 1.0).astype(np.float32) for i, c in enumerate(curves)]
    return MouthTrack(*curves, fps=speech.fps, n_frames=speech.n_frames, source=source)


def _phoneme_gain(opening: np.ndarray, active: np.ndarray) -> float:
    """The scale that brings the phoneme opening's 90th percentile over the voiced grid points to PHONEME_OPEN_P90."""
    voiced = opening[active] if active.any() else opening
    top = float(np.percentile(voiced, 90)) if len(voiced) else 0.0
    return float(np.clip(PHONEME_OPEN_P90 / max(top, 1e-6), *_PHONEME_GAIN_RANGE))


def _phoneme_targets(speech: Speech, n_grid: int) -> np.ndarray:
    weighted = np.zeros((n_grid, 4))
    weight = np.zeros(n_grid)
    # Outside any phoneme (before the first, after the last, padding) the mouth rests.
    covered = np.zeros(n_grid, dtype=bool)
    for unit in speech.phonemes:
        a = int(round(unit.start * GRID_HZ))
        b = int(round(unit.end * GRID_HZ))
        a, b = max(a, 0), min(max(b, a + 1), n_grid)
        if a >= n_grid or b <= a:
            continue
        vis = viseme_for(unit.label)
        s = np.array([vis.start.open, vis.start.width, vis.start.round, vis.start.closure])
        e = np.array([vis.end.open, vis.end.width, vis.end.round, vis.end.closure])
        t = (np.arange(b - a) + 0.5) / (b - a)
        weighted[a:b] = (s[None] + (e - s)[None] * t[:, None]) * vis.dominance
        weight[a:b] = vis.dominance
        covered[a:b] = True
    rest_weight = 1.5
    weight[~covered] = rest_weight  # weighted stays 0 there: the rest shape is all zeros
    sigma = _PHONEME_SIGMA_S * GRID_HZ
    num = np.stack([_gaussian_smooth(weighted[:, i], sigma) for i in range(4)], axis=1)
    den = _gaussian_smooth(weight, sigma)
    return num / np.maximum(den, 1e-9)[:, None]


_FEATURE_CHUNK = 1024  # analysis windows per chunk


def _windows(sample_rate: int, n_grid: int) -> tuple[int, np.ndarray]:
    """The analysis window's length and each grid point's window start (windows centred on the points)."""
    win = max(int(round(_WINDOW_S * sample_rate)), 16)
    centres = np.round((np.arange(n_grid) + 0.5) * sample_rate / GRID_HZ).astype(np.int64)
    return win, centres - win // 2


def _levels(samples: np.ndarray, sample_rate: int, n_grid: int) -> np.ndarray:
    """RMS level (dBFS) of each grid point's window (zeros outside the signal), from a running sum of squares."""
    x = np.asarray(samples).reshape(-1)
    win, starts = _windows(sample_rate, n_grid)
    sums = np.empty(n_grid)
    # The running sum per chunk of grid points, over only the samples that chunk's windows cover: float64
    # copies of the whole clip (four of them, ~0.5 MB per second of speech) made memory grow with its length.
    for c0 in range(0, n_grid, _FEATURE_CHUNK):
        chunk = starts[c0 : c0 + _FEATURE_CHUNK]
        lo, hi = np.clip([chunk[0], chunk[-1] + win], 0, len(x))
        part = x[lo:hi].astype(np.float64)
        energy = np.concatenate([[0.0], np.cumsum(part * part)])
        ends = np.clip(chunk + win, 0, len(x)) - lo
        sums[c0 : c0 + _FEATURE_CHUNK] = energy[ends] - energy[np.clip(chunk, 0, len(x)) - lo]
    rms = np.sqrt(np.maximum(sums, 0.0) / win)
    return 20.0 * np.log10(np.maximum(rms, 1e-6))


def _centroids(samples: np.ndarray, sample_rate: int, n_grid: int) -> np.ndarray:
    """log2 spectral centroid (100 Hz .. 5 kHz) of each grid point's Hann-windowed frame (zeros outside the
    signal). In float32: the centroids are within ~1e-5 octave of float64's, at a third of the time."""
    from scipy.fft import rfft

    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    win, starts = _windows(sample_rate, n_grid)
    n_fft = 1 << int(np.ceil(np.log2(win)))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = np.flatnonzero((freqs >= _CENTROID_BAND[0]) & (freqs <= _CENTROID_BAND[1]))
    log_f = np.log2(np.maximum(freqs[band], 1.0)).astype(np.float32)
    window = np.hanning(win).astype(np.float32)
    # every window as a row of one strided view over the zero-padded signal: rows are gathered, not samples
    right = max(win, int(starts.max(initial=0)) + win - len(x))
    padded = np.concatenate([np.zeros(win, np.float32), x, np.zeros(right, np.float32)])
    rows = np.lib.stride_tricks.sliding_window_view(padded, win)
    centroid = np.zeros(n_grid)
    # Chunks keep memory flat for long clips (a few MB of temporaries per chunk).
    for c0 in range(0, n_grid, _FEATURE_CHUNK):
        spectrum = rfft(rows[starts[c0 : c0 + _FEATURE_CHUNK] + win] * window, n=n_fft, axis=1)[:, band]
        power = spectrum.real**2 + spectrum.imag**2
        total = power.sum(axis=1, dtype=np.float64)
        weighted = (power @ log_f).astype(np.float64)
        centroid[c0 : c0 + _FEATURE_CHUNK] = np.where(total > 0, weighted / np.maximum(total, 1e-20), 0.0)
    return centroid


def _voice_activity(level_db: np.ndarray) -> tuple[np.ndarray, float, float]:
    loud = float(np.percentile(level_db, 95))
    floor = float(np.percentile(level_db, 10))
    gate = floor + _GATE_ABOVE_FLOOR_DB
    gate = min(max(gate, loud - _GATE_RANGE_DB[0]), loud - _GATE_RANGE_DB[1])
    gate = max(gate, _ABS_FLOOR_DB)
    active = level_db > gate
    active = _close_gaps(active, int(round(_MIN_GAP_S * GRID_HZ)))
    active = _hangover(active, *(int(round(s * GRID_HZ)) for s in _HANGOVER_S))
    return active, gate, max(loud, gate + 1.0)


def _signal_targets(
    level_db: np.ndarray, centroid: np.ndarray, active: np.ndarray, gate: float, loud: float
) -> np.ndarray:
    n = len(level_db)
    out = np.zeros((n, 4))
    opening = np.clip((level_db - (loud - _OPEN_RANGE_DB)) / _OPEN_RANGE_DB, 0.0, 1.0) ** 1.3
    out[:, 0] = np.where(active, opening, 0.0)
    voiced = active & (level_db > gate + 0.25 * (loud - gate))
    if voiced.any():
        ref = float(np.median(centroid[voiced]))
        dev = (centroid - ref) / _CENTROID_SCALE_OCT
        strength = np.where(active, np.clip((level_db - gate) / (loud - gate), 0.0, 1.0), 0.0)
        out[:, 1] = np.clip(dev, -_SHAPE_CAP, _SHAPE_CAP) * strength
        out[:, 2] = np.clip(-dev, 0.0, _SHAPE_CAP) * strength
    out[:, 3] = _burst_closures(level_db, active)
    return out


def _burst_closures(level_db: np.ndarray, active: np.ndarray) -> np.ndarray:
    n = len(level_db)
    closure = np.zeros(n)
    half = int(round(0.12 * GRID_HZ))
    local_loud = _running_max(level_db, half)
    low = level_db < local_loud - _DIP_DEPTH_DB
    burst = max(int(round(_BURST_S * GRID_HZ)), 1)
    min_len, max_len = (int(round(s * GRID_HZ)) for s in _DIP_S)
    for a, b in _runs(low):
        if not min_len <= b - a <= max_len or a == 0 or b + burst >= n:
            continue
        speech_before = active[max(a - half, 0) : a].any()
        speech_after = active[b : b + half].any()
        rise = level_db[b : b + burst + 1].max() - level_db[b - 1]
        if speech_before and speech_after and rise >= _BURST_RISE_DB:
            closure[a:b] = min((b - a - min_len) / ((_FULL_CLOSURE_DIP_S - _DIP_S[0]) * GRID_HZ), 1.0)
    return closure


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def _close_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    out = mask.copy()
    for a, b in _runs(~mask):
        if a > 0 and b < len(mask) and b - a < max_gap:
            out[a:b] = True
    return out


def _hangover(mask: np.ndarray, before: int, after: int) -> np.ndarray:
    """Extend each active run by `before` grid steps before it and `after` after it (speech starts and ends
    softer than the gate)."""
    if before + after <= 0 or not mask.any():
        return mask
    # "full" then the part that lines up, not mode="same": that returns the kernel's length when the clip is
    # shorter than the kernel (0.1 s of speech), which broke every array beside it.
    counts = np.convolve(mask.astype(np.int32), np.ones(before + after + 1, dtype=np.int32), mode="full")
    return counts[before : before + len(mask)] > 0


def _running_max(x: np.ndarray, half: int) -> np.ndarray:
    padded = np.concatenate([np.full(half, -np.inf), x, np.full(half, -np.inf)])
    view = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return view.max(axis=1)


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter with edge values held, so a curve that starts at rest stays at rest."""
    radius = max(int(np.ceil(3 * sigma)), 1)
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([np.full(radius, x[0]), x, np.full(radius, x[-1])])
    return np.convolve(padded, kernel, mode="valid")


def _per_frame(grid: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Average the grid over each video frame's interval (a box filter matched to the frame rate)."""
    n_grid = len(grid)
    edges = np.round(np.arange(n_frames + 1) * GRID_HZ / fps).astype(np.int64)
    edges = np.clip(edges, 0, n_grid)
    cums = np.concatenate([np.zeros((1, grid.shape[1])), np.cumsum(grid, axis=0)])
    out = np.zeros((n_frames, grid.shape[1]))
    a, b = edges[:-1], edges[1:]
    wide = b > a
    out[wide] = (cums[b[wide]] - cums[a[wide]]) / (b[wide] - a[wide])[:, None]
    # Frames shorter than one grid step (fps > GRID_HZ) or past the end take the nearest grid point.
    narrow = ~wide
    if narrow.any():
        centre = np.clip(((np.arange(n_frames) + 0.5) * GRID_HZ / fps).astype(np.int64), 0, n_grid - 1)
        out[narrow] = grid[centre[narrow]]
    return out


def _rise_limit(x: np.ndarray, limit: float) -> np.ndarray:
    out = x.copy()
    for i in range(1, len(out)):
        out[i] = min(out[i], out[i - 1] + limit)
    return out


def _slew_limit(x: np.ndarray, limit: float) -> np.ndarray:
    if len(x) < 2:
        return x.copy()
    fwd = x.copy()
    for i in range(1, len(fwd)):
        fwd[i] = min(max(fwd[i], fwd[i - 1] - limit), fwd[i - 1] + limit)
    bwd = x.copy()
    for i in range(len(bwd) - 2, -1, -1):
        bwd[i] = min(max(bwd[i], bwd[i + 1] - limit), bwd[i + 1] + limit)
    return 0.5 * (fwd + bwd)
