"""The mouth closed in silences: how much of each frame keeps the preview's closed mouth instead of MuseTalk's.

Upstream's mouth keeps moving where the speech is silent (the model regenerates the lower face from the audio
features on every frame, and whisper's features of silence are not "closed"). talkreel keeps the closed-mouth
source there: the preview engine's frame, which MuseTalk's mouth is otherwise pasted on (rendered with the speech
silenced: a photo's mouth shut, a video persona's footage with its own closed mouths from its mouth library).

Which frames: the ones QC calls silent (pipelines.speech.levels.silent_frames, on the speech's per-frame levels), so
the guarantee holds on the frames QC's closed-mouth figure checks. Hysteresis: only silent stretches of at least
MIN_SILENCE_S keep the closed mouth; shorter gaps between words (and stop closures) are left to the model. The
weight rises over the stretch's first FADE_S (QC's own figure skips a pause's first 0.12 s, the time a mouth takes
to close) and falls over its last FADE_S, so the model's mouth is back in full as the speech starts; a stretch at
the clip's start or end is closed up to that edge.
"""

from __future__ import annotations

import numpy as np

from pipelines.speech.levels import silent_frames, speech_levels_db
from pipelines.speech.track import Speech

MIN_SILENCE_S = 0.2
FADE_S = 0.12


def closed_weights(speech: Speech) -> np.ndarray:
    """(n_frames,) float32 in [0, 1]: the share of each frame taken from the closed-mouth source."""
    levels = speech_levels_db(speech.samples, speech.sample_rate, speech.fps, speech.n_frames)
    return gate(silent_frames(levels), speech.fps)


def gate(silent: np.ndarray, fps: float) -> np.ndarray:
    """closed_weights from per-frame silence (see the module docstring)."""
    silent = np.asarray(silent, bool)
    n = len(silent)
    out = np.zeros(n, np.float32)
    min_len = max(1, int(round(MIN_SILENCE_S * fps)))
    fade = max(0, int(round(FADE_S * fps)))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a < min_len:
            continue
        k = np.arange(b - a, dtype=np.float32)
        rise = np.ones_like(k) if a == 0 else (k + 1) / (fade + 1)
        fall = np.ones_like(k) if b == n else (b - a - k) / (fade + 1)
        out[a:b] = np.minimum(1.0, np.minimum(rise, fall))
    return out
