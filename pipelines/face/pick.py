"""Which face of a photo is the persona's when it shows several: the largest, or the one the persona names.

A persona picks with `face: {index: N}` (0 = the largest, then by size) or `face: {x: .., y: ..}` (fractions of
the image's width and height: the face whose box holds that point, else the nearest one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.face.landmarks import FaceLandmarks


def pick_face(faces: list[FaceLandmarks], pick: Any, image_size: tuple[int, int]) -> FaceLandmarks:
    """The chosen face among `faces` (largest first, as detect_faces gives them); ValueError when the pick
    names a face that is not there. `pick` None means the largest; `image_size` is (width, height)."""
    if not faces:
        raise ValueError("no face found")
    if pick is None:
        return faces[0]
    if pick.index is not None:
        if pick.index >= len(faces):
            raise ValueError(
                f"face.index {pick.index} but the image shows {len(faces)} face(s) (0 is the largest)"
            )
        return faces[pick.index]
    x, y = pick.x * image_size[0], pick.y * image_size[1]
    inside = [f for f in faces if f.bbox[0] <= x <= f.bbox[2] and f.bbox[1] <= y <= f.bbox[3]]
    if inside:
        return inside[0]
    return min(faces, key=lambda f: float(np.hypot(*(f.points.mean(axis=0) - (x, y)))))
