"""Speech made by the tests themselves: espeak-ng draft speech with silence around it, and noise bursts."""

from __future__ import annotations

import numpy as np

from pipelines.speech.track import Speech, TimedUnit
from pipelines.speech.tts import Synthesis


def shift_units(units: tuple[TimedUnit, ...], offset: float) -> tuple[TimedUnit, ...]:
    return tuple(TimedUnit(u.start + offset, u.end + offset, u.label) for u in units)


def padded_speech(
    synth: Synthesis, lead_s: float, tail_s: float, fps: float = 25.0, with_timing: bool = True
) -> Speech:
    """The synthesis with digital silence before and after, as a Speech of a whole number of frames."""
    sr = synth.sample_rate
    n_frames = int(round((lead_s + synth.duration + tail_s) * fps))
    total = int(round(n_frames / fps * sr))
    samples = np.zeros(total, dtype=np.float32)
    lead = int(round(lead_s * sr))
    body = synth.samples[: max(total - lead, 0)]
    samples[lead : lead + len(body)] = body
    phonemes = shift_units(synth.phonemes, lead / sr) if with_timing else ()
    words = shift_units(synth.words, lead / sr) if with_timing else ()
    return Speech(samples, sr, fps, n_frames, phonemes, words)


def noise_bursts(
    pattern: list[tuple[float, float]], sample_rate: int = 16000, floor: float = 3e-4, seed: int = 0
) -> np.ndarray:
    """Concatenated segments of (duration s, amplitude) white noise with 5 ms ramps, over a faint noise floor."""
    rng = np.random.default_rng(seed)
    pieces = []
    ramp = int(0.005 * sample_rate)
    for duration, amplitude in pattern:
        n = int(round(duration * sample_rate))
        seg = rng.normal(0.0, 1.0, n) * amplitude
        if amplitude > 0 and n > 2 * ramp:
            env = np.ones(n)
            env[:ramp] = np.linspace(0, 1, ramp)
            env[-ramp:] = np.linspace(1, 0, ramp)
            seg *= env
        pieces.append(seg)
    x = np.concatenate(pieces)
    x += rng.normal(0.0, floor, len(x))
    return x.astype(np.float32)


def frames_within(start: float, end: float, fps: float, margin: float = 0.0) -> np.ndarray:
    """Indices of frames whose whole interval lies inside [start + margin, end - margin]."""
    first = int(np.ceil((start + margin) * fps))
    last = int(np.floor((end - margin) * fps)) - 1
    return np.arange(first, last + 1)
