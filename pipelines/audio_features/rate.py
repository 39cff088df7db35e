"""Speech at the 16 kHz the whisper features are computed from."""

from __future__ import annotations

from math import gcd

import numpy as np

RATE = 16000


def at_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """float32 mono samples at 16 kHz (polyphase resampling when `rate` differs)."""
    samples = np.asarray(samples, np.float32)
    if rate == RATE:
        return samples
    from scipy.signal import resample_poly

    g = gcd(int(rate), RATE)
    return resample_poly(samples, RATE // g, int(rate) // g).astype(np.float32)
