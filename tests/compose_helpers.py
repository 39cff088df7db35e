"""Synthetic inputs for the compose/provenance tests: a moving gradient clip with a face-like blob, a tone."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipelines.speech.track import Speech, TimedUnit

FPS = 25.0
CLIP_SIZE = (384, 384)


def clip_frame(i: int, size: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    """Frame i of the synthetic clip: a drifting colour gradient and a face-like blob whose mouth opens."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frame = np.stack(
        [(x * 200 / w + i * 4) % 256, 60 + y * 120 / h, 140 + 60 * np.sin((x + y) / 40 + i / 6)], axis=-1
    )
    cx, cy = w / 2 + 8 * np.sin(i / 7), h / 2
    face = ((x - cx) / (0.22 * w)) ** 2 + ((y - cy) / (0.3 * h)) ** 2 < 1
    frame[face] = (220, 180, 150)
    for ex in (-0.08, 0.08):
        eye = ((x - cx - ex * w) ** 2 + (y - cy + 0.08 * h) ** 2) < (0.02 * w) ** 2
        frame[eye] = (40, 30, 30)
    mouth = (np.abs(x - cx) < 0.07 * w) & (
        np.abs(y - cy - 0.12 * h) < (0.01 + 0.02 * (1 + np.sin(i / 2))) * h
    )
    frame[mouth] = (120, 40, 50)
    return np.clip(frame, 0, 255).astype(np.uint8)


def clip_frames(n: int, size: tuple[int, int] = CLIP_SIZE) -> Iterator[np.ndarray]:
    for i in range(n):
        yield clip_frame(i, size)


def tone(seconds: float, rate: int, gaps: tuple[tuple[float, float], ...] = ()) -> np.ndarray:
    """A 220 Hz tone with amplitude wobble (speech-like energy) and silent `gaps` (start, end) in seconds."""
    t = np.arange(int(round(seconds * rate))) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    for a, b in gaps:
        samples[int(a * rate) : int(b * rate)] = 0
    return samples


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes())
    return path


def make_speech(n_frames: int, words: tuple[TimedUnit, ...] = (), gaps=()) -> Speech:
    seconds = n_frames / FPS
    return Speech(
        samples=tone(seconds, 16000, gaps), sample_rate=16000, fps=FPS, n_frames=n_frames, words=words
    )


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        data = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32767
        return data, wav.getframerate()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)
