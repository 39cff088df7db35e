"""Where the face sits in a preview frame cut from a still portrait.

The portrait is cut with a similarity transform (rotation, uniform scale, shift) that levels the eyes and puts
them at a fixed place with a fixed inter-ocular distance, so every persona is framed alike. The cut is wider than
the output by `margin` pixels on every side: idle head motion moves the frame inside that margin and never shows
an edge.
"""

from __future__ import annotations

import numpy as np

from pipelines.face import mesh

EYE_DISTANCE = 0.27  # inter-ocular distance as a share of the output's smaller side
EYE_HEIGHT = 0.42  # eye line as a share of the output height
MARGIN = 0.04  # extra border for head motion, as a share of the output's larger side


def portrait_matrix(points: np.ndarray, size: tuple[int, int], margin: int) -> np.ndarray:
    """2x3 matrix mapping the portrait onto a (w + 2 margin, h + 2 margin) face-centred canvas."""
    w, h = size
    left = points[list(mesh.LEFT_EYE)].mean(0)
    right = points[list(mesh.RIGHT_EYE)].mean(0)
    centre = (left + right) / 2
    eye_vec = right - left
    scale = EYE_DISTANCE * min(w, h) / float(np.linalg.norm(eye_vec))
    angle = np.arctan2(eye_vec[1], eye_vec[0])
    c, s = np.cos(-angle) * scale, np.sin(-angle) * scale
    rot = np.array([[c, -s], [s, c]])
    target = np.array([w / 2 + margin, EYE_HEIGHT * h + margin])
    return np.concatenate([rot, (target - rot @ centre)[:, None]], axis=1)


def margin_for(size: tuple[int, int]) -> int:
    return int(round(MARGIN * max(size)))


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]
