"""Which face is the persona's when the source shows several: the largest, or the one the persona names.

A persona picks with `face: {index: N}` (0 = the largest, then by size) or `face: {x: .., y: ..}` (fractions of
the image's width and height: the face whose box holds that point, else the nearest one). In a video the pick is
made on the first frame that shows a face, and the face track follows that person from there
(pipelines.face.track). Every engine that looks for the persona's face goes through here:

    face = persona_face(image, persona.face, path)       # a still (or a video's first frame); None: no face
    track = track_faces(frames, pick=persona.face)       # a video: FacePickError when the pick names no face

QC follows the picked person in the output with FaceFollower (pipelines.qc.measure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipelines.face.landmarks import FaceLandmarks


class FacePickError(ValueError):
    """The persona's `face` pick names a face the source does not show."""


def pick_face(faces: list[FaceLandmarks], pick: Any, image_size: tuple[int, int]) -> FaceLandmarks:
    """The chosen face among `faces` (largest first, as detect_faces gives them); FacePickError when there is
    none or the pick names a face that is not there. `pick` None means the largest; `image_size` is (width,
    height)."""
    if not faces:
        raise FacePickError("no face found")
    if pick is None:
        return faces[0]
    if pick.index is not None:
        if pick.index >= len(faces):
            raise FacePickError(
                f"face.index {pick.index} but the image shows {len(faces)} face(s) (0 is the largest)"
            )
        return faces[pick.index]
    return face_at(faces, (pick.x * image_size[0], pick.y * image_size[1]))


def face_at(faces: list[FaceLandmarks], point: tuple[float, float]) -> FaceLandmarks:
    """The face whose landmark box holds `point` (pixels; the largest such), else the face nearest to it."""
    x, y = point
    inside = [f for f in faces if f.bbox[0] <= x <= f.bbox[2] and f.bbox[1] <= y <= f.bbox[3]]
    if inside:
        return inside[0]
    return min(faces, key=lambda f: float(np.hypot(*(f.points.mean(axis=0) - (x, y)))))


def persona_face(image: np.ndarray, pick: Any, source: str | Path) -> FaceLandmarks | None:
    """The persona's face in one RGB still (a photo, or a video's first frame): the largest face, or the one
    `pick` (the persona's `face`, None for the default) names. None when the image shows no face; an InputError
    on the persona's `face` field, naming `source`, when the pick names a face that is not there."""
    from pipelines.errors import InputError
    from pipelines.face.landmarks import detect_faces

    faces = detect_faces(image)
    if not faces:
        return None
    try:
        return pick_face(faces, pick, (image.shape[1], image.shape[0]))
    except FacePickError as exc:
        raise InputError(source, "face", f"{exc} in the persona image") from None


def pick_key(pick: Any) -> str:
    """The pick as text for a preparation's cache key ("" for the default, so those keys stay as they were)."""
    return pick.model_dump_json() if pick is not None else ""


class FaceFollower:
    """The picked person through frames of one clip, measured in order (QC, pipelines.qc): on the first frame
    that shows the picked face, `pick` (a FacePick in the frames' own terms: an index by size, or a point as
    fractions of the frame) chooses it; on every later frame, the face at or nearest to where it was last seen,
    and no face at all when the nearest is farther than a face's width from there (the person left, or only
    the other person is found): a figure then misses a frame rather than measure somebody else."""

    def __init__(self, pick: Any):
        self.pick = pick
        self.last: FaceLandmarks | None = None  # the picked face where it was last seen

    def choose(self, faces: list[FaceLandmarks], image_size: tuple[int, int]) -> FaceLandmarks | None:
        """The picked person's face among `faces` (largest first), or None; `image_size` is (width, height)."""
        if not faces:
            return None
        if self.pick is None:
            return faces[0]
        if self.last is None:
            try:
                face = pick_face(faces, self.pick, image_size)
            except FacePickError:  # the picked face is not (yet) among those found
                return None
            point = (
                None
                if self.pick.index is not None
                else (self.pick.x * image_size[0], self.pick.y * image_size[1])
            )
            if point is not None and not _within(face, point, face.bbox[2] - face.bbox[0]):
                return None
        else:
            at = (float(self.last.centre[0]), float(self.last.centre[1]))
            face = face_at(faces, at)
            if not _within(face, at, self.last.width):
                return None
        self.last = face
        return face


def _within(face: FaceLandmarks, point: tuple[float, float], reach: float) -> bool:
    """`point` is in the face's box, or its centre is at most `reach` pixels from it."""
    x0, y0, x1, y1 = face.bbox
    inside = x0 <= point[0] <= x1 and y0 <= point[1] <= y1
    return inside or float(np.hypot(*(face.centre - point))) <= reach
