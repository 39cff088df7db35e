"""Named index groups of MediaPipe's 478-point face mesh (468 mesh points + 10 iris points).

Every other module refers to these names, never to raw indices. Sides follow the IMAGE, not the subject:
`LEFT_*` is the feature on the left of the picture (the subject's right) for an upright, camera-facing face,
which is also the order LatentSync's template uses (first brow anchor at x=17, second at x=58).
Contours are listed in drawing order (closed loops for lips, eyes and the face oval).
"""

from __future__ import annotations

import numpy as np

N_POINTS = 478
"""468 face-mesh points plus 5 iris points per eye (refine_landmarks=True)."""

# --- lips -----------------------------------------------------------------------------------------------
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
"""Outer lip contour, starting at the image-left mouth corner, lower lip first."""
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
"""Inner lip contour (the mouth opening), starting at the image-left inner corner, lower lip first."""
MOUTH_CORNER_LEFT = 61
MOUTH_CORNER_RIGHT = 291
MOUTH_CORNERS = (MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT)
INNER_MOUTH_CORNERS = (78, 308)
UPPER_LIP_TOP = 0
UPPER_LIP_INNER = 13
LOWER_LIP_INNER = 14
LOWER_LIP_BOTTOM = 17

# --- eyes -----------------------------------------------------------------------------------------------
LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
"""Image-left eye contour (subject's right eye), outer corner first, lower lid then upper lid."""
RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
"""Image-right eye contour (subject's left eye), outer corner first, lower lid then upper lid."""
LEFT_EYE_CORNERS = (33, 133)  # outer, inner
RIGHT_EYE_CORNERS = (263, 362)  # outer, inner
LEFT_EYE_LIDS = (159, 145)  # upper lid centre, lower lid centre
RIGHT_EYE_LIDS = (386, 374)
LEFT_IRIS = (468, 469, 470, 471, 472)  # centre first
RIGHT_IRIS = (473, 474, 475, 476, 477)
LEFT_PUPIL = 468
RIGHT_PUPIL = 473

# --- brows ----------------------------------------------------------------------------------------------
LEFT_BROW_UPPER = (70, 63, 105, 66, 107)  # outer -> inner, along the upper edge of the brow
LEFT_BROW_LOWER = (46, 53, 52, 65, 55)
RIGHT_BROW_UPPER = (300, 293, 334, 296, 336)
RIGHT_BROW_LOWER = (276, 283, 282, 295, 285)
LEFT_BROW = LEFT_BROW_UPPER + LEFT_BROW_LOWER
RIGHT_BROW = RIGHT_BROW_UPPER + RIGHT_BROW_LOWER
LEFT_BROW_INNER = 107
RIGHT_BROW_INNER = 336

# --- nose -----------------------------------------------------------------------------------------------
NOSE_TIP = 1
NOSE_BRIDGE = (168, 6, 197, 195, 5, 4)  # from between the eyes down to just above the tip
NOSE_BOTTOM = (98, 97, 2, 326, 327)  # image-left ala -> subnasale -> image-right ala
NOSE_ALAE = (129, 358)

# --- face outline ---------------------------------------------------------------------------------------
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
"""Closed face outline from the top of the forehead, clockwise in the image."""
JAW = (
    454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234,
)  # fmt: skip
"""Lower half of the face oval: image-right cheek edge, over the chin, to the image-left cheek edge."""
CHIN = 152
FOREHEAD_TOP = 10
CHEEK_EDGE_LEFT = 234
CHEEK_EDGE_RIGHT = 454

SYMMETRIC_PAIRS = (
    (CHEEK_EDGE_LEFT, CHEEK_EDGE_RIGHT),
    (LEFT_EYE_CORNERS[0], RIGHT_EYE_CORNERS[0]),
    (LEFT_EYE_CORNERS[1], RIGHT_EYE_CORNERS[1]),
    (MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT),
    (172, 397),  # jaw angles
    (LEFT_BROW_UPPER[0], RIGHT_BROW_UPPER[0]),
)
"""Left/right point pairs mirrored across the face's midline; used to estimate yaw."""


def centre(points: np.ndarray, group: tuple[int, ...] | int) -> np.ndarray:
    """Mean position of an index group; works on (478, d) and on batches (..., 478, d)."""
    if isinstance(group, int):
        return points[..., group, :]
    return points[..., list(group), :].mean(axis=-2)


def mouth_opening(points: np.ndarray) -> float:
    """Inner-lip gap at the middle of the mouth over the pupil distance, for one face's (478, 2) landmarks: the
    opening QC measures and the speech's gaps are calibrated in (pipelines.speech.mouth.OPEN_GAP)."""
    p = np.asarray(points, np.float64)
    eyes = float(np.linalg.norm(p[RIGHT_PUPIL] - p[LEFT_PUPIL]))
    gap = float(np.linalg.norm(p[LOWER_LIP_INNER] - p[UPPER_LIP_INNER]))
    return gap / max(eyes, 1e-6)
