"""Where the face sits in a preview frame cut from a still portrait.

The portrait is cut with the face helper's face-centred crop (scale and shift, the pupils a fixed distance apart
at a fixed place), so every persona is framed alike. The cut is wider than the output by `margin` pixels on every
side: idle head motion moves the frame inside that margin and never shows an edge.
"""

from __future__ import annotations

import numpy as np

from pipelines.face.align import face_centred_crop_matrix

EYE_DISTANCE = 0.24  # distance between the pupils as a share of the output's smaller side
EYE_HEIGHT = 0.40  # eye line as a share of the output height
MARGIN = 0.04  # extra border for head motion, as a share of the output's larger side


def margin_for(size: tuple[int, int]) -> int:
    return int(round(MARGIN * max(size)))


def portrait_matrix(
    points: np.ndarray, size: tuple[int, int], margin: int, image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """(2, 3) matrix taking the portrait onto a (w + 2 margin, h + 2 margin) face-centred canvas.

    With `image_size` (the portrait's (width, height)) the canvas never reaches past the picture: it is moved
    (the face leaves the centre a little), and zoomed in only if the picture is too small for it, rather than
    showing mirrored or smeared borders."""
    w, h = size
    side = min(w, h)
    matrix = face_centred_crop_matrix(points, side, EYE_DISTANCE, EYE_HEIGHT)
    # the helper centres the eyes in a side x side square; move them to their place on the wider canvas
    matrix[0, 2] += w / 2 + margin - side / 2
    matrix[1, 2] += EYE_HEIGHT * h + margin - EYE_HEIGHT * side
    if image_size is None:
        return matrix
    canvas = np.array([w + 2 * margin, h + 2 * margin], np.float64)
    picture = np.asarray(image_size, np.float64)
    scale = matrix[0, 0]
    needed = float(np.max(canvas / picture))
    if scale < needed:  # zoom about the eyes' target point
        anchor = np.array([w / 2 + margin, EYE_HEIGHT * h + margin])
        source_anchor = (anchor - matrix[:, 2]) / scale
        scale = needed
        matrix[:, :2] = np.eye(2) * scale
        matrix[:, 2] = anchor - scale * source_anchor
    matrix[:, 2] = np.clip(matrix[:, 2], canvas - scale * picture, 0.0)
    return matrix
