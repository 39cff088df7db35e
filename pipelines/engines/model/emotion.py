"""Which emotion of a persona's table an expression track shows (for engines that take emotions as words or looks).

    vectors = emotion_table(persona.emotions)                  # pipelines.expression.build
    names = dominant_emotions(expression.values[a:b], vectors)  # per frame: a name, or "" when none dominates

The expression track carries parameter values, not emotion names; each emotion's strength in a frame is its
least-squares amount alone (projection of the row on the emotion's vector, idle parameters left out), and the
strongest one counts when it reaches `threshold`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipelines.expression.track import PARAMS

THRESHOLD = 0.5
IDLE = ("blink", "head_yaw", "head_pitch", "head_roll")  # idle life, not an emotion


def dominant_emotions(
    values: np.ndarray, vectors: Mapping[str, np.ndarray], threshold: float = THRESHOLD
) -> list[str]:
    """Per row of `values` (F, len(PARAMS)), the emotion whose amount is largest and >= threshold, else ""."""
    cols = [i for i, p in enumerate(PARAMS) if p not in IDLE]
    names = [k for k, v in vectors.items() if np.any(np.asarray(v)[cols])]  # "neutral" (all zero) never wins
    if not names or not len(values):
        return [""] * len(values)
    vecs = np.stack([np.asarray(vectors[k])[cols] for k in names])
    amount = np.asarray(values)[:, cols] @ vecs.T / np.maximum((vecs * vecs).sum(axis=1), 1e-9)
    best = amount.argmax(axis=1)
    return [names[b] if amount[i, b] >= threshold else "" for i, b in enumerate(best)]
