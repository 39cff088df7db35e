"""Per-frame expression parameters: the common language between the emotion track and every engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Each parameter is a signed amount, 0 = the persona's resting face. Head angles are in degrees.
PARAMS: tuple[str, ...] = (
    "smile",  # mouth corners up/out, cheeks raised (negative: corners down)
    "brow_raise",  # both brows up
    "brow_lower",  # both brows down (frown)
    "brow_inner",  # inner brow ends up (sadness, worry)
    "eye_open",  # lids wider (+) or narrower (-)
    "blink",  # 0 open .. 1 closed
    "jaw",  # extra jaw drop not caused by speech (surprise)
    "head_yaw",
    "head_pitch",
    "head_roll",
)
# The values a persona's own emotion may give each parameter (at intensity 1): beyond them the warps tear the
# face (eye_open: 5 splits the lids). Head angles in degrees; the built-in presets stay well inside.
PARAM_RANGES: dict[str, tuple[float, float]] = {
    "smile": (-1.0, 1.0),
    "brow_raise": (-1.0, 1.0),
    "brow_lower": (-1.0, 1.0),
    "brow_inner": (-1.0, 1.0),
    "eye_open": (-1.0, 1.0),
    "blink": (0.0, 1.0),
    "jaw": (0.0, 1.0),
    "head_yaw": (-20.0, 20.0),
    "head_pitch": (-20.0, 20.0),
    "head_roll": (-20.0, 20.0),
}


@dataclass(frozen=True)
class ExpressionTrack:
    """(n_frames, len(PARAMS)) float32 values, one row per output frame."""

    values: np.ndarray

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(PARAMS):
            raise ValueError(f"expression values must be (n_frames, {len(PARAMS)}), got {self.values.shape}")

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])

    def param(self, name: str) -> np.ndarray:
        return self.values[:, PARAMS.index(name)]

    @classmethod
    def neutral(cls, n_frames: int) -> ExpressionTrack:
        return cls(np.zeros((n_frames, len(PARAMS)), np.float32))
