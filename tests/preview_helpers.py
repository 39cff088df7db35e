"""Shared pieces of the expression, preview and QC tests: the package portrait prepared once, test speech."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pipelines.engines.base import RenderSettings
from pipelines.speech.track import Speech

FPS = 25.0
SIZE = (256, 256)
RATE = 16000


class MemoryCache:
    """An ArrayCache in memory (the disk cache has its own tests)."""

    def __init__(self):
        self.store: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        self.computed = 0

    def get_or_compute(self, namespace, key, compute):
        if (namespace, key) not in self.store:
            self.computed += 1
            self.store[(namespace, key)] = compute()
        return self.store[(namespace, key)]


def scratch_dir(prefix: str) -> Path:
    """A temporary folder for media a test module builds once and caches, removed when the test run ends (by
    the process that made it: a forked render child exits without pulling it away)."""
    folder = tempfile.mkdtemp(prefix=prefix)
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True))
    return Path(folder)


@functools.lru_cache(maxsize=1)
def portrait_path() -> Path:
    from pipelines.engines.preview.demo import ensure_demo_portrait

    return ensure_demo_portrait(scratch_dir("talkreel-demo-"))


def settings(size=SIZE, idle: float = 1.0, mouth_gain: float = 1.0) -> RenderSettings:
    from pipelines.spec.engines import PreviewSettings

    return RenderSettings(
        fps=FPS, size=size, seed=0, engine=PreviewSettings(idle=idle, mouth_gain=mouth_gain)
    )


@functools.lru_cache(maxsize=2)
def prepared(size=SIZE):
    from pipelines.engines.preview.engine import PreviewEngine

    persona = SimpleNamespace(source=portrait_path(), source_kind="image")
    return PreviewEngine().prepare(persona, settings(size), MemoryCache())


def silence(seconds: float) -> Speech:
    n = int(round(seconds * FPS))
    return Speech(np.zeros(int(round(n / FPS * RATE)), np.float32), RATE, FPS, n)


@functools.lru_cache(maxsize=4)
def tts_speech(
    text: str = "Hello there. We open and close our mouths.", lead: float = 0.4, tail: float = 0.6
) -> Speech:
    """espeak-ng speech resampled to 16 kHz with silence around it, with its phoneme timing."""
    from math import gcd

    from scipy.signal import resample_poly

    from pipelines.speech.track import TimedUnit
    from pipelines.speech.tts import synthesize

    syn = synthesize(text)
    g = gcd(RATE, syn.sample_rate)
    body = resample_poly(syn.samples, RATE // g, syn.sample_rate // g).astype(np.float32)
    n = int(round((lead + len(body) / RATE + tail) * FPS))
    samples = np.zeros(int(round(n / FPS * RATE)), np.float32)
    start = int(round(lead * RATE))
    body = body[: len(samples) - start]
    samples[start : start + len(body)] = body

    def shift(units):
        return tuple(TimedUnit(u.start + lead, u.end + lead, u.label) for u in units)

    return Speech(samples, RATE, FPS, n, shift(syn.phonemes), shift(syn.words))


def openings(frames) -> np.ndarray:
    """Mouth opening measured by MediaPipe on each frame (NaN where no face)."""
    from pipelines.face.landmarks import LandmarkDetector
    from pipelines.qc.measure import mouth_opening

    out = []
    with LandmarkDetector("image", max_faces=1) as det:
        for f in frames:
            faces = det.detect(f)
            out.append(mouth_opening(faces[0].points) if faces else np.nan)
    return np.array(out)
