"""Emotion track -> per-frame expression parameters, plus idle life (blinks, small head motion).

Each entry of the emotion track becomes an envelope in time that ramps in and out with a smoothstep over
`RAMP_S` seconds centred on the entry's start and end, so back-to-back entries cross-fade (the two smoothsteps sum
to one) and nothing pops. An entry without an end lasts until the next entry starts (or the clip ends).
The envelopes weight each emotion's parameter vector (times its intensity) and are summed.

Idle life is seeded and computed for the whole clip at once, so any frame's value is known without rendering the
frames before it (resumable renders):
- blinks at irregular intervals (gamma-distributed gaps, now and then a double blink), a fast close and a slower open;
- head motion as a sum of slow sinusoids with random frequencies and phases (smooth, never repeating exactly).
`idle` scales the head motion; 0 switches idle life off entirely (no blinks, no motion).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pipelines.expression.emotions import BUILTIN_EMOTIONS
from pipelines.expression.track import PARAMS, ExpressionTrack

RAMP_S = 0.4  # onset/release duration; faster reads as a twitch, slower as lag behind the words
BLINK_CLOSE_S = 0.08
BLINK_HOLD_S = 0.04
BLINK_OPEN_S = 0.16
BLINK_MEAN_GAP_S = 3.6  # people blink ~15-20 times a minute when talking
BLINK_MIN_GAP_S = 1.0
DOUBLE_BLINK_P = 0.12
HEAD_AMPLITUDE_DEG = {"head_yaw": 2.0, "head_pitch": 1.2, "head_roll": 0.8}


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _as_tuple(entry: Any) -> tuple[float, float | None, str, float]:
    if isinstance(entry, tuple | list):
        start, end, emotion, intensity = entry
    else:
        start, end, emotion, intensity = entry.start, entry.end, entry.emotion, entry.intensity
    return float(start), (None if end is None else float(end)), str(emotion), float(intensity)


def emotion_table(custom_emotions: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, np.ndarray]:
    """Built-in emotions overlaid with a persona's own, as parameter vectors; unknown parameter names raise."""
    table: dict[str, Mapping[str, float]] = dict(BUILTIN_EMOTIONS)
    table.update(custom_emotions or {})
    vectors = {}
    for name, values in table.items():
        vec = np.zeros(len(PARAMS), np.float32)
        for param, value in values.items():
            if param not in PARAMS:
                raise ValueError(f"emotion {name!r}: unknown parameter {param!r}; known: {', '.join(PARAMS)}")
            vec[PARAMS.index(param)] = float(value)
        vectors[name] = vec
    return vectors


def _envelope(t: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    # An entry that starts at the clip's start is already there on frame 0 (no fade-in from neutral).
    rise = np.ones_like(t) if start <= 0 else _smoothstep((t - (start - ramp / 2)) / ramp)
    fall = 1.0 - _smoothstep((t - (end - ramp / 2)) / ramp)
    return rise * fall


def emotion_curves(entries: Iterable[Any], n_frames: int, fps: float, custom_emotions=None) -> np.ndarray:
    """(n_frames, len(PARAMS)) from the emotion track alone (no idle life)."""
    table = emotion_table(custom_emotions)
    items = sorted((_as_tuple(e) for e in entries), key=lambda e: e[0])
    t = np.arange(n_frames, dtype=np.float64) / fps
    clip_end = n_frames / fps
    out = np.zeros((n_frames, len(PARAMS)), np.float64)
    for i, (start, end, emotion, intensity) in enumerate(items):
        if emotion not in table:
            raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(sorted(table))}")
        if end is None:
            end = items[i + 1][0] if i + 1 < len(items) else clip_end + RAMP_S
        # Short entries get shorter ramps so they still reach their intensity.
        ramp = max(min(RAMP_S, (end - start) / 2), 1.0 / fps)
        out += _envelope(t, start, end, ramp)[:, None] * (intensity * table[emotion])[None, :]
    return out


def blink_curve(n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """0 open .. 1 closed; blink onsets at irregular, seeded intervals."""
    duration = n_frames / fps
    t = np.arange(n_frames, dtype=np.float64) / fps
    curve = np.zeros(n_frames)
    onset = rng.uniform(0.4, 2.0)  # not on frame 0: an opening frame with closed eyes looks like a glitch
    shape = 4.0
    while onset < duration:
        onsets = [onset]
        if rng.random() < DOUBLE_BLINK_P:
            onsets.append(onset + BLINK_CLOSE_S + BLINK_HOLD_S + BLINK_OPEN_S + rng.uniform(0.05, 0.15))
        for t0 in onsets:
            # Snap the fully-closed moment onto a frame, so every blink really closes the lids at least once.
            t_closed = np.round((t0 + BLINK_CLOSE_S) * fps) / fps
            closing = _smoothstep((t - (t_closed - BLINK_CLOSE_S)) / BLINK_CLOSE_S)
            opening = 1.0 - _smoothstep((t - (t_closed + BLINK_HOLD_S)) / BLINK_OPEN_S)
            curve = np.maximum(curve, np.minimum(closing, opening))
        gap = rng.gamma(shape, (BLINK_MEAN_GAP_S - BLINK_MIN_GAP_S) / shape)
        onset = onsets[-1] + BLINK_MIN_GAP_S + gap
    return curve


def head_motion(n_frames: int, fps: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Smooth pseudo-random yaw/pitch/roll in degrees at amplitude 1 (sum of slow incommensurate sinusoids)."""
    t = np.arange(n_frames, dtype=np.float64) / fps
    out = {}
    for name, amplitude in HEAD_AMPLITUDE_DEG.items():
        freqs = rng.uniform(0.05, 0.45, size=4)
        phases = rng.uniform(0, 2 * np.pi, size=4)
        weights = rng.uniform(0.5, 1.0, size=4) / freqs  # more of the slow components: sway, not tremor
        wave = (weights[None, :] * np.sin(2 * np.pi * freqs[None, :] * t[:, None] + phases[None, :])).sum(1)
        out[name] = amplitude * wave / weights.sum() * 1.6
    return out


def build_expression_track(
    entries: Iterable[Any],
    n_frames: int,
    fps: float,
    seed: int,
    idle: float = 1.0,
    custom_emotions: Mapping[str, Mapping[str, float]] | None = None,
) -> ExpressionTrack:
    """Per-frame expression parameters for a clip of `n_frames` at `fps`.

    `entries`: (start, end|None, emotion, intensity) tuples or objects with those attributes, times in seconds.
    `custom_emotions`: a persona's emotions (name -> {param: value}), overriding built-ins of the same name.
    Unknown emotion or parameter names raise ValueError listing the known ones.
    """
    if n_frames < 0 or fps <= 0:
        raise ValueError(f"need n_frames >= 0 and fps > 0, got {n_frames}, {fps}")
    values = emotion_curves(entries, n_frames, fps, custom_emotions)
    if idle > 0 and n_frames:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7A1C]))
        b = PARAMS.index("blink")
        values[:, b] = np.maximum(values[:, b], blink_curve(n_frames, fps, rng))
        for name, wave in head_motion(n_frames, fps, rng).items():
            values[:, PARAMS.index(name)] += idle * wave
    values[:, PARAMS.index("blink")] = np.clip(values[:, PARAMS.index("blink")], 0.0, 1.0)
    return ExpressionTrack(values.astype(np.float32))
