"""A drawn open hand that MediaPipe's hand landmarker finds (no photo needed), and hand-pose tracks."""

from __future__ import annotations

import numpy as np


def hand_image(size: int = 256, dx: float = 0.0, spread: float = 1.0) -> np.ndarray:
    """RGB uint8: a skin-coloured open right hand, palm to the camera, on a blue-grey background; `dx` moves it
    sideways (fraction of the size). Found by MediaPipe's palm detector at ~0.8 confidence at 256 px."""
    import cv2

    im = np.full((size, size, 3), (70, 90, 120), np.uint8)
    skin, crease = (230, 180, 150), (200, 150, 125)
    s = size / 384
    cx, cy = size / 2 + dx * size, size * 0.66

    def p(x: float, y: float) -> tuple[int, int]:
        return int(cx + x * s), int(cy + y * s)

    cv2.fillPoly(im, [np.int32([p(-55, -40), p(55, -45), p(50, 45), p(-45, 55)])], skin, cv2.LINE_AA)
    cv2.ellipse(im, p(0, 10), (int(58 * s), int(62 * s)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    for bx, length, deg in ((-42, 75, -14), (-14, 92, -4), (14, 98, 3), (40, 86, 12)):
        a = np.deg2rad(deg * spread)
        x1, y1 = bx + np.sin(a) * length, -40 - np.cos(a) * length
        cv2.line(im, p(bx, -40), p(x1, y1), skin, int(22 * s), cv2.LINE_AA)
        for f in (0.45, 0.75):
            xm, ym = bx + (x1 - bx) * f, -40 + (y1 + 40) * f
            cv2.line(im, p(xm - 8, ym), p(xm + 8, ym), crease, 1, cv2.LINE_AA)
    cv2.line(im, p(-50, 10), p(-100, -40), skin, int(26 * s), cv2.LINE_AA)  # thumb
    return cv2.GaussianBlur(im, (3, 3), 0)


def wave_track(n: int = 40, fps: float = 24.0):
    """HandPoses: both hands seen, moving on a slow circle, with a body anchor."""
    from pipelines.poses.track import HandPoses

    t = np.arange(n) / fps
    base = np.stack([np.linspace(0.6, 0.7, 21), np.linspace(0.8, 0.6, 21)], axis=-1)
    pts = np.zeros((n, 2, 21, 2), np.float32)
    for slot, x0 in ((0, 0.0), (1, -0.3)):
        pts[:, slot] = base + [x0, 0] + 0.05 * np.stack([np.cos(t), np.sin(t)], -1)[:, None, :]
    return HandPoses(pts, np.ones((n, 2, 21), np.float32), fps, 1.0, np.array([0.5, 0.45, 0.4], np.float32))
