"""The job's speech as every engine and composer sees it: samples plus optional phoneme/word timing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TimedUnit:
    """A phoneme or word with its time span in seconds from the start of the speech."""

    start: float
    end: float
    label: str


@dataclass(frozen=True)
class Speech:
    """Mono speech exactly `n_frames / fps` seconds long (already padded/trimmed and loudness-normalised).

    `phonemes` / `words` are filled when the script text is known (draft text synthesised by espeak-ng,
    or a `script:` aligned to a recording); they are empty otherwise.
    """

    samples: np.ndarray  # float32, mono, in [-1, 1]
    sample_rate: int
    fps: float
    n_frames: int
    phonemes: tuple[TimedUnit, ...] = field(default=())
    words: tuple[TimedUnit, ...] = field(default=())
    # the same samples before loudness normalisation (the speech as decoded), for models whose audio features were
    # trained on un-normalised speech; None: `samples` are the decoded speech
    decoded: np.ndarray | None = field(default=None, repr=False)

    @property
    def decoded_samples(self) -> np.ndarray:
        """The speech as decoded, before loudness normalisation (what upstream models computed features from)."""
        return self.samples if self.decoded is None else self.decoded

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps
