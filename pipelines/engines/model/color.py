"""Colour match of a regenerated face region to its source (an optional engine setting, off for parity).

keep_np = mask (R, R), 1 = kept from the source, 0 = regenerated
ring = torch.as_tensor(np.flatnonzero(color_ring(keep_np)), device=device)   # once per render
faces = color_match(faces, crops, keep, ring)                                # per chunk, on the device
"""

from __future__ import annotations

import numpy as np


def color_ring(keep: np.ndarray, band: int = 6) -> np.ndarray:
    """(R, R) bool: the `band`-pixel ring just inside the regenerated region (keep < 0.5) of the mask."""
    import cv2

    regen = (np.asarray(keep) < 0.5).astype(np.uint8)
    return (regen & (1 - cv2.erode(regen, np.ones((2 * band + 1,) * 2, np.uint8)))).astype(bool)


def color_match(generated, source, keep, ring):
    """Shift the regenerated region's colour so that, along the inside of its border, it matches the source face.

    generated, source: (F, 3, R, R) float 8-bit levels (torch); keep: (R, R) mask (1 keep); ring: the flat pixel
    indices of color_ring(keep) (a tensor, made once; no device synchronisation per chunk). The per-channel mean
    offset is measured on the ring (skin in both images) and applied to the regenerated region only, weighted by
    1 - keep, so kept pixels are untouched."""
    if ring.numel() == 0:
        return generated
    offset = source.flatten(2)[:, :, ring].mean(dim=-1) - generated.flatten(2)[:, :, ring].mean(
        dim=-1
    )  # (F, 3)
    return (generated + offset[:, :, None, None] * (1 - keep)).round().clamp(0, 255)
