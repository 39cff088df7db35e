"""Built-in emotion presets: name -> expression parameters at intensity 1.

Values are in the units of `pipelines.expression.track.PARAMS` (head angles in degrees). A persona may redefine
these names or add its own; the spec validates names against this table plus the persona's own emotions, so this
module imports nothing from the spec.
"""

from __future__ import annotations

from types import MappingProxyType

BUILTIN_EMOTIONS = MappingProxyType(
    {
        "neutral": {},
        # A Duchenne smile: the cheeks lift and narrow the eyes a little, which sells it more than the mouth does.
        "happy": {"smile": 1.0, "eye_open": -0.25, "brow_raise": 0.1},
        "sad": {"smile": -0.6, "brow_inner": 1.0, "eye_open": -0.3, "head_pitch": -2.0},
        "angry": {"brow_lower": 1.0, "eye_open": 0.15, "smile": -0.35},
        "surprised": {"brow_raise": 1.0, "eye_open": 0.8, "jaw": 0.45},
        # Looking aside and up with one brow effort reads as thinking; the head tilt does most of the work.
        "thinking": {
            "brow_lower": 0.35,
            "brow_raise": 0.2,
            "eye_open": -0.2,
            "smile": -0.15,
            "head_roll": 3.0,
            "head_yaw": 3.0,
        },
    }
)
