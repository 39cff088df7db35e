"""Test media for the face tests, all built from skimage's public-domain astronaut portrait (512x512).

The reference positions below were read off the picture once by eye, on a 3x enlargement with a 10-px grid
(pupils are dark discs about 4 px across, the smile opening spans x 205..245 at y 138..150), independently of
MediaPipe: they check that landmarks land on the right features, not that MediaPipe agrees with itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import skimage.data

LEFT_PUPIL = (203.0, 101.0)  # image-left eye (the astronaut's right eye)
RIGHT_PUPIL = (246.0, 103.0)
MOUTH_CENTRE = (224.0, 145.0)  # middle of the open smile
CHIN = (222.0, 178.0)
POSITION_TOL = 5.0  # px: ~5% of the ~100 px face, a pupil's size; much larger errors mean a wrong feature

FACE_BOX = (110, 20, 350, 260)  # x0, y0, x1, y1: a square around the face with hair and neck


def portrait() -> np.ndarray:
    return skimage.data.astronaut()


def face_crop() -> np.ndarray:
    x0, y0, x1, y1 = FACE_BOX
    return portrait()[y0:y1, x0:x1].copy()


def two_faces() -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """A grey canvas with the face crop at full size on the left and at 0.6x on the right.

    Returns the image and, per copy, (x, y) of its left pupil in canvas coordinates and its scale."""
    import cv2

    face = face_crop()
    canvas = np.full((360, 720, 3), 180, np.uint8)
    small = cv2.resize(face, (144, 144), interpolation=cv2.INTER_AREA)
    canvas[40:280, 40:280] = face
    canvas[120:264, 480:624] = small
    lx, ly = LEFT_PUPIL[0] - FACE_BOX[0], LEFT_PUPIL[1] - FACE_BOX[1]
    return canvas, [(40 + lx, 40 + ly, 1.0), (480 + lx * 0.6, 120 + ly * 0.6, 0.6)]


def moving_portrait_frames(
    n: int = 24, size: int = 320, gap: tuple[int, int] | None = None, shift: float = 2.0
) -> list[np.ndarray]:
    """The 240-px face crop sliding right by `shift` px per frame on a grey canvas, starting 20 px from the left
    edge and 40 px from the top; frames in `gap` = [start, end) are a flat colour with no face."""
    import cv2

    face = face_crop()
    frames = []
    for i in range(n):
        canvas = np.full((size, size, 3), 170, np.uint8)
        if gap is not None and gap[0] <= i < gap[1]:
            frames.append(canvas)
            continue
        m = np.float32([[1, 0, 20 + shift * i], [0, 1, 40]])
        placed = cv2.warpAffine(face, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(170, 170, 170))
        frames.append(placed)
    return frames


def write_video(
    path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = 25, lossless: bool = False
) -> None:
    """An H.264 video of RGB frames: yuv420p at CRF 12, or with `lossless` RGB at QP 0 (decodes to the same
    pixels)."""
    import av

    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(os.fspath(path), "w") as out:
        if lossless:
            stream = out.add_stream("libx264rgb", rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "rgb24"
            stream.options = {"qp": "0"}
        else:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "12", "preset": "ultrafast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    import cv2

    assert cv2.imwrite(os.fspath(path), image[:, :, ::-1])
