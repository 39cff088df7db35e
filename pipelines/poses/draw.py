"""Pose images as upstream draws them (src/utils/dwpose_util.py draw_pose_select_v2 / draw_handpose).

Only the hands: on a black canvas scaled so its short side is 800 px, each of the 20 bones a 2 px line coloured by
its index around the HSV hue circle and dimmed by the product of its end scores, each keypoint a filled circle of
radius 4 in red dimmed by its score; then resized (bilinear) to the output size. Upstream draws into a BGR canvas
with RGB colour triples and converts BGR->RGB at the end, so the bone colours come out with red and blue swapped;
that is what the pose encoder was trained on, so it is reproduced.
"""

from __future__ import annotations

import colorsys

import numpy as np

EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip
EPS = 0.01
REFERENCE_SIDE = 800
_BONE_RGB = [np.array(colorsys.hsv_to_rgb(i / len(EDGES), 1.0, 1.0)) for i in range(len(EDGES))]


def draw_hands(points: np.ndarray, scores: np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB pose image of hands `points` (2, 21, 2) in frame fractions, `scores` (2, 21)."""
    import cv2

    sr = REFERENCE_SIDE / min(height, width)
    ch, cw = int(height * sr), int(width * sr)
    canvas = np.zeros((ch, cw, 3), np.uint8)  # channels in upstream's drawing order (B, G, R)
    scores = np.clip(scores, 0.0, 1.0)
    for peaks, score in zip(points, scores, strict=True):
        px = (peaks[:, 0] * cw).astype(int)
        py = (peaks[:, 1] * ch).astype(int)
        for ie, (a, b) in enumerate(EDGES):
            if min(px[a], py[a], px[b], py[b]) > EPS:
                colour = _BONE_RGB[ie] * int(score[a] * score[b] * 255)
                cv2.line(
                    canvas, (int(px[a]), int(py[a])), (int(px[b]), int(py[b])), colour.tolist(), thickness=2
                )
        for i in range(len(peaks)):
            if px[i] > EPS and py[i] > EPS:
                cv2.circle(canvas, (int(px[i]), int(py[i])), 4, (0, 0, int(score[i] * 255)), thickness=-1)
    image = cv2.resize(canvas, (width, height))
    return np.ascontiguousarray(image[..., ::-1])  # upstream's BGR -> RGB
