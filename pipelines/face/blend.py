"""Pasting a generated face crop back into its frame, and passing frames without a face through.

Paste-back follows LatentSync's restore step: the crop is resized to the alignment crop (W, H), warped back into the
frame with the inverse of the alignment; an all-ones (H, W) mask goes through the same warp, is eroded by 2x2, then
eroded again by a (2 * w_edge)^2 box with w_edge = int(sqrt(mask area)) // 20 and feathered with a Gaussian of size
2 * w_edge + 1 (sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8, OpenCV's rule); the result alpha-blends the face onto the frame.
Everything runs inside the bounding box of the warped crop (plus a few pixels of zero mask): outside it alpha is 0
and the frame is untouched, so the cost does not grow with the frame size.

`passthrough_crossfade` turns per-frame face-found flags into blend weights so that frames without a face show the
original frame and the rendered face fades in and out around them instead of cutting.
"""

from __future__ import annotations

import numpy as np

from pipelines.face.align import crop_footprint

_ROI_PAD = 4  # px of zero mask kept around the warped crop: erosion/blur then behave as on the full frame


def _shifted(matrix: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """frame->crop matrix expressed for ROI coordinates (ROI pixel (u, v) = frame pixel (u + x0, v + y0))."""
    m = np.asarray(matrix, np.float64).copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    return m


def feathered_mask(
    matrix: np.ndarray, crop_size: tuple[int, int], frame_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """(soft alpha, hard eroded mask, roi) for pasting a (W, H) crop aligned by `matrix` into an (h, w) frame.

    Both masks are float32 of the ROI's shape; roi = (x0, y0, x1, y1) in frame pixels (empty when the crop lies
    outside the frame)."""
    import cv2

    x0, y0, x1, y1 = crop_footprint(matrix, crop_size, frame_hw, _ROI_PAD)
    if x1 <= x0 or y1 <= y0:
        empty = np.zeros((0, 0), np.float32)
        return empty, empty, (x0, y0, x0, y0)
    w, h = crop_size
    m = _shifted(matrix, x0, y0)
    ones = np.ones((h, w), np.float32)
    warped = cv2.warpAffine(
        ones, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0
    )
    eroded = cv2.erode(warped, np.ones((2, 2), np.uint8))
    w_edge = int(float(eroded.sum()) ** 0.5) // 20
    if w_edge > 0:
        centre = cv2.erode(eroded, np.ones((2 * w_edge, 2 * w_edge), np.uint8))
        k = 2 * w_edge + 1
        sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
        soft = cv2.GaussianBlur(centre, (k, k), sigma)
    else:
        soft = eroded
    return soft, eroded, (x0, y0, x1, y1)


def paste_back(
    frame: np.ndarray,
    face: np.ndarray,
    matrix: np.ndarray,
    crop_size: tuple[int, int],
    weight: float = 1.0,
) -> np.ndarray:
    """The frame with `face` blended in; `frame` is not modified.

    frame: (h, w, 3) uint8. face: the face image, uint8 (or float 0..255), either (H, W, 3) = crop_size already or
    R x R (resized to (W, H) first, bicubic). matrix: the (2, 3) frame->crop alignment used to make it.
    weight: multiplies alpha (passthrough cross-fade); 0 returns a copy of the frame."""
    import cv2

    out = frame.copy()
    if weight <= 0:
        return out
    w, h = crop_size
    if face.shape[:2] != (h, w):
        face = cv2.resize(np.asarray(face, np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    soft, eroded, (x0, y0, x1, y1) = feathered_mask(matrix, crop_size, frame.shape[:2])
    if x1 <= x0 or y1 <= y0:
        return out
    m = _shifted(matrix, x0, y0)
    warped = cv2.warpAffine(
        np.asarray(face, np.float32),
        m,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderValue=(0.0, 0.0, 0.0),
    )
    alpha = (soft * np.float32(min(weight, 1.0)))[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = alpha * (warped * eroded[..., None]) + (1.0 - alpha) * region
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def passthrough_crossfade(found: np.ndarray, fade: int = 4) -> np.ndarray:
    """Per-frame weight in [0, 1] of the rendered face: 0 where no face was found (the original frame passes
    through), rising smoothly (smoothstep) over `fade` frames on each side of such a gap, 1 elsewhere.

    The ramp sits on the frames that do have a face, so a gap is never entered or left with a cut. The clip's own
    start and end are not gaps."""
    found = np.asarray(found, dtype=bool)
    n = found.shape[0]
    if fade < 0:
        raise ValueError("fade must be >= 0")
    # distance in frames to the nearest frame without a face (n + fade if there is none)
    far = n + fade + 1
    dist = np.full(n, far, dtype=np.int64)
    last = None
    for i in range(n):
        if not found[i]:
            last = i
        if last is not None:
            dist[i] = i - last
    last = None
    for i in range(n - 1, -1, -1):
        if not found[i]:
            last = i
        if last is not None:
            dist[i] = min(dist[i], last - i)
    t = np.clip(dist / float(fade + 1), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)
