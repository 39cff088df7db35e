"""LatentSync's fixed lower-face mask, drawn by code (upstream ships it as a PNG; we do not copy it).

In the 256 x 256 aligned face, 1 = keep the source pixel, 0 = the model regenerates it. The regenerated region is
rows 95..242: rows 95..127 only at the sides (x 9..77 and 178..246, leaving the nose in the middle untouched), and
rows 128..242 a rounded jaw, U-shaped, spanning the full cheek width at the top and closing below the chin.
The jaw is the superellipse |(x - cx) / a|^n + |(y - y0) / b|^n <= 1 (full width above y0); its five constants were fitted to the row
extents of upstream's mask (which is hand-drawn and slightly asymmetric); tests/test_face_mask.py reports the
agreement when that file is at hand.
"""

from __future__ import annotations

import numpy as np

BASE = 256
SIDE_ROWS = (95, 127)  # inclusive
SIDE_COLUMNS = ((9, 77), (178, 246))  # inclusive
JAW_ROWS = (128, 242)  # inclusive
JAW_CX, JAW_A, JAW_Y0, JAW_B, JAW_N = 128.4, 119.1, 144.7, 98.7, 1.87


def latentsync_mask_256() -> np.ndarray:
    """(256, 256) uint8, 1 = keep, 0 = regenerate."""
    mask = np.ones((BASE, BASE), dtype=np.uint8)
    y0, y1 = SIDE_ROWS
    for x0, x1 in SIDE_COLUMNS:
        mask[y0 : y1 + 1, x0 : x1 + 1] = 0
    yy, xx = np.mgrid[0:BASE, 0:BASE].astype(np.float64)
    below = np.clip(yy - JAW_Y0, 0.0, None)  # above its widest row the jaw keeps the full cheek width
    jaw = np.abs((xx - JAW_CX) / JAW_A) ** JAW_N + (below / JAW_B) ** JAW_N <= 1.0
    rows = (yy >= JAW_ROWS[0]) & (yy <= JAW_ROWS[1])
    mask[jaw & rows] = 0
    return mask


def latentsync_mask(resolution: int = 256) -> np.ndarray:
    """(R, R) float32 in [0, 1], 1 = keep. Other sizes are resized from the 256 mask with Lanczos-4 on 8-bit values
    (so the ringing saturates at 0 and 1), as upstream resizes its PNG."""
    import cv2

    base = latentsync_mask_256() * np.uint8(255)
    if resolution != BASE:
        base = cv2.resize(base, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)
    return base.astype(np.float32) / 255.0


def latent_mask(resolution: int = 256, factor: int = 8) -> np.ndarray:
    """The mask channel fed to the UNet: the (R, R) mask nearest-resized to (R / 8, R / 8), float32."""
    mask = latentsync_mask(resolution)
    n = resolution // factor
    idx = np.floor(np.arange(n) * (resolution / n)).astype(np.int64)
    return mask[np.ix_(idx, idx)]
