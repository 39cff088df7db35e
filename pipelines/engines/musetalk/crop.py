"""MuseTalk's face box and blend mask from talkreel's MediaPipe mesh (no DWPose, S3FD or face-parsing network).

Upstream's box (musetalk/utils/preprocessing.py, scripts/inference.py) is read off DWPose's 68 face landmarks
(iBUG 300-W order): left/right = the landmarks' min/max x, bottom = their max y (the chin), top = landmark 29
mirrored: nose29.y - (chin.y - nose29.y); v1.5 then adds `extra_margin` = 10 px below the chin. The crop is squashed
to 256 x 256 and its lower half masked, so the mask edge (the box's middle row) falls at nose29.y + margin / 2: the
mouth opening depends on where that is (assets/BBOX_SHIFT.md: in the training crops it lay at landmark 28, 29 or 30
in 15 / 63 / 22 % of faces, on average 0.07 of a bridge step below 29).

Calibration to the mesh, checked against the 68 iBUG landmarks of dlib's 300-W shape predictor (the convention
DWPose's face points follow) on real frames (docs/musetalk.md has the figures): landmark 29 lies on the nose
bridge between mesh points 168 (its top, between the eyes) and 1 (the tip), NOSE29_T = 0.56 of the way down on
average over the faces compared (0.50..0.67 face by face; 2/3, the even spacing of 27..30 assumed before, put the
mask edge ~2 % of the box height low). The sides and the bottom come from the lower face oval (mesh 127 .. 152 ..
356, the points that carry 300-W's jaw contour 0..16); no other 68-point landmark lies outside them. The mesh is
the one fitted on a crop around the face (LandmarkDetector.refit): on a small face in a large frame the
full-frame fit is loose (jaw ~4 % of the box height low, a side up to 18 % of the width out), the crop's fit lies
on the 68-point jaw within ~1 %. The 10 px margin was set for upstream's frames, where the box is ~256 px tall;
here it is 10 / 256 of the box height, so a 4K and a 480p video put the mask edge at the same place on the face.

Blend mask: upstream pastes the regenerated crop through BiSeNet's "jaw" parsing (skin dilated down past the chin,
lips; the nose excluded) below the middle row of a 1.5x square around the box, blurred with a Gaussian of 5 % of
that square. Here the same region comes from the mesh: the lower face oval pushed out a little past the jaw line,
below the box's middle row, minus the nose, within the box, feathered the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.face import mesh

NOSE29_TOP, NOSE29_TIP = 168, 1
NOSE29_T = 0.56
LOWER_OVAL = (
    127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
    377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356,
)  # fmt: skip
NOSE = (98, 64, 129, 49, 48, 219, 1, 439, 278, 279, 358, 294, 327, 326, 2, 97)  # nostrils, alae and the tip
EXTRA_MARGIN = 10.0  # upstream v1.5, pixels at a box height of REFERENCE_HEIGHT
REFERENCE_HEIGHT = 256.0
JAW_PUSH = (
    0.06  # the oval pushed out by this fraction of the face height (upstream dilates the skin downwards)
)
EXPAND = 1.5  # upstream's square around the box for the blend
BLUR = 0.05  # upstream's Gaussian kernel: 5 % of that square


def nose29(points: np.ndarray) -> np.ndarray:
    """(..., 2): 300-W landmark 29 on the mesh (see the module docstring)."""
    top, tip = points[..., NOSE29_TOP, :], points[..., NOSE29_TIP, :]
    return top + NOSE29_T * (tip - top)


@dataclass(frozen=True)
class Box:
    x1: int
    y1: int
    x2: int
    y2: int  # the margin included

    @property
    def size(self) -> tuple[int, int]:
        return self.x2 - self.x1, self.y2 - self.y1

    @property
    def ok(self) -> bool:
        return self.x2 - self.x1 >= 4 and self.y2 - self.y1 >= 4


def face_box(points: np.ndarray, frame_hw: tuple[int, int]) -> Box:
    """Upstream's v1.5 crop box (integer pixels, inside the frame) from one face's (478, 2) mesh points."""
    h, w = frame_hw
    oval = points[list(LOWER_OVAL)]
    chin = float(oval[:, 1].max())
    n29 = float(nose29(points)[1])
    top = max(0.0, n29 - (chin - n29))
    margin = EXTRA_MARGIN * (chin - top) / REFERENCE_HEIGHT
    x1 = max(0, int(np.floor(oval[:, 0].min())))
    x2 = min(w, int(np.ceil(oval[:, 0].max())))
    return Box(x1, int(top), x2, min(h, int(round(chin + margin))))


def crop(frame: np.ndarray, box: Box, resolution: int = 256) -> np.ndarray:
    """The box squashed to resolution x resolution (Lanczos, as upstream)."""
    region = frame[box.y1 : box.y2, box.x1 : box.x2]
    return cv2.resize(region, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)


def blend_region(box: Box, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Upstream's 1.5x square around the box, clipped to the frame: where the mask lives."""
    h, w = frame_hw
    xc, yc = (box.x1 + box.x2) // 2, (box.y1 + box.y2) // 2
    s = int(max(box.size) // 2 * EXPAND)
    return max(0, xc - s), max(0, yc - s), min(w, xc + s), min(h, yc + s)


def blend_mask(points: np.ndarray, box: Box, frame_hw: tuple[int, int]) -> tuple[np.ndarray, tuple]:
    """(alpha float32 in [0, 1] over the blend region, the region (x0, y0, x1, y1)): the lower face below the box's
    middle row, without the nose, within the box, feathered."""
    x0, y0, x1, y1 = region = blend_region(box, frame_hw)
    hard = np.zeros((y1 - y0, x1 - x0), np.uint8)
    oval = points[list(LOWER_OVAL)].astype(np.float64)
    centre = mesh.centre(points, mesh.NOSE_TIP).astype(np.float64)
    face_h = max(1.0, float(oval[:, 1].max() - points[mesh.FOREHEAD_TOP, 1]))
    direction = oval - centre
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    pushed = oval + direction / np.maximum(norm, 1e-6) * JAW_PUSH * face_h
    offset = np.array([x0, y0], np.float64)
    cv2.fillPoly(hard, [np.round(pushed - offset).astype(np.int32)], 1)
    nose = cv2.convexHull(np.round(points[list(NOSE)] - offset).astype(np.int32))
    cv2.fillPoly(hard, [nose], 0)
    keep = np.zeros_like(hard)
    mid = (box.y1 + box.y2) // 2
    keep[max(0, mid - y0) : box.y2 - y0, box.x1 - x0 : box.x2 - x0] = 1
    hard &= keep
    side = 2 * int(max(box.size) // 2 * EXPAND)
    k = int(BLUR * side // 2 * 2) + 1
    alpha = cv2.GaussianBlur(hard.astype(np.float32), (k, k), 0) if k > 1 else hard.astype(np.float32)
    return alpha, region


def paste(
    frame: np.ndarray, face: np.ndarray, box: Box, alpha: np.ndarray, region: tuple, weight: float = 1.0
):
    """The frame with the generated face (R, R, 3 uint8) resized into the box and blended through alpha."""
    x0, y0, x1, y1 = region
    out = frame.copy()
    w, h = box.size
    big = frame[y0:y1, x0:x1].astype(np.float32)
    generated = big.copy()
    generated[box.y1 - y0 : box.y2 - y0, box.x1 - x0 : box.x2 - x0] = cv2.resize(face, (w, h))
    a = (alpha * float(weight))[..., None]
    out[y0:y1, x0:x1] = np.clip(big + a * (generated - big) + 0.5, 0, 255).astype(np.uint8)
    return out
