"""Similarity alignment of a face to a fixed template, as LatentSync crops faces, and its inverse.

LatentSync fits a 2-D similarity transform (rotation, uniform scale, translation) from three anchors — the centres of
the two brows and a "nose centre" — to a fixed template, warps the frame into a (W, H) crop with that transform
(bilinear, grey 127 outside the frame) and resizes the crop non-uniformly to R x R (R = 256 for 1.5, 512 for 1.6).

Anchors from the 478-point mesh. Upstream takes them from a 106-point model (brow centre = mean of 5 of the 9 points
of a brow, nose centre = mean of 4 nose points); version 1.5 was trained on crops made from 68-point landmarks (brow
means of points 17-21 and 22-26, nose mean of points 27-35). We cannot run either model, so we map by anatomy:
- brow centre = mean of the brow's upper and lower contour (mesh.LEFT_BROW / RIGHT_BROW, 10 points): the brow's
  centroid, which any 5-point subset along the brow approximates to a fraction of the brow's thickness;
- nose centre = mean of the mesh's analogues of 68-point 27..35: four points down the bridge from the nasion to the
  tip (168, 197, 5, 1) and five along the nostril base (98, 97, 2, 326, 327).
On frontal faces (six portraits checked) this nose centre lies 0.60-0.75 brow-distances below the brow line while the
template puts it at 20/41 = 0.49; upstream's 68/106-point nose means sit similarly low (both average the bridge with
the nostril base), so the least-squares fit spreads the same mismatch over the anchors as upstream's does.
The anchors are rounded to whole pixels, as upstream does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.face import mesh

NOSE_CENTRE = (168, 197, 5, 1, 98, 97, 2, 326, 327)
"""Mesh analogues of the 68-point nose (27..35): bridge nasion -> tip, then the nostril base left -> right."""

FILL_VALUE = 127
"""Grey written where the crop reaches outside the frame (upstream's fill)."""

BIAS_MEMORY = 0.2
"""Weight of the previous frame's nose bias in the temporal smoothing (upstream: 0.2 * prev + 0.8 * current)."""


@dataclass(frozen=True)
class AlignTemplate:
    """Where the three anchors go, in crop pixels, and the crop size (W, H) before the resize to R x R."""

    resolution: int
    points: np.ndarray  # (3, 2): left brow, right brow, nose
    crop_size: tuple[int, int]  # (W, H)


def latentsync_template(resolution: int = 256) -> AlignTemplate:
    """LatentSync's template: ratio = R / 256 * 2.8; anchors [[17, 20], [58, 20], [37.5, 40]] * ratio;
    crop (int(75 * ratio), int(100 * ratio)) = (210, 280) at 256 and (420, 560) at 512."""
    if resolution <= 0 or resolution % 8:
        raise ValueError(f"resolution must be a positive multiple of 8, got {resolution}")
    ratio = resolution / 256 * 2.8
    points = np.array([[17.0, 20.0], [58.0, 20.0], [37.5, 40.0]]) * ratio
    return AlignTemplate(resolution, points, (int(75 * ratio), int(100 * ratio)))


def latentsync_anchors(points: np.ndarray, round_to_pixels: bool = True) -> np.ndarray:
    """(..., 478, 2) mesh points -> (..., 3, 2) anchors: image-left brow centre, image-right brow centre, nose centre."""
    anchors = np.stack(
        [
            mesh.centre(points, mesh.LEFT_BROW),
            mesh.centre(points, mesh.RIGHT_BROW),
            mesh.centre(points, NOSE_CENTRE),
        ],
        axis=-2,
    ).astype(np.float64)
    return np.round(anchors) if round_to_pixels else anchors


def _normalise(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    c = p.mean(axis=0)
    centred = p - c
    s = float(np.std(centred, ddof=1))  # unbiased, over all 2k coordinates at once
    if not np.isfinite(s) or s < 1e-9:
        raise ValueError("degenerate alignment points (all equal or not finite)")
    return centred / s, c, s


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) matrix of the least-squares similarity that maps `src` (k, 2) points onto `dst` (k, 2).

    Both sets are centred and divided by their own unbiased standard deviation over all coordinates; the rotation
    comes from the SVD of src^T dst (R = V U^T, with V's last column negated when that would be a reflection);
    scale = s_dst / s_src. Applied as x' = M[:, :2] @ x + M[:, 2]."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"expected two (k, 2) point sets with k >= 2, got {src.shape} and {dst.shape}")
    p1, c1, s1 = _normalise(src)
    p2, c2, s2 = _normalise(dst)
    u, _, vt = np.linalg.svd(p1.T @ p2)
    v = vt.T
    rot = v @ u.T
    if np.linalg.det(rot) < 0:
        v[:, -1] = -v[:, -1]
        rot = v @ u.T
    sr = (s2 / s1) * rot
    return np.concatenate([sr, (c2 - sr @ c1)[:, None]], axis=1)


def nose_bias(anchors: np.ndarray, template_points: np.ndarray) -> np.ndarray:
    """Normalised template nose minus normalised detected nose (upstream adds this, smoothed, to the translation)."""
    return (
        _normalise(np.asarray(template_points, np.float64))[0][2]
        - _normalise(np.asarray(anchors, np.float64))[0][2]
    )


def alignment_matrices(
    anchors: np.ndarray,
    template: AlignTemplate,
    smooth: bool = True,
    prev_bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-frame (n, 2, 3) frame->crop matrices for anchors (n, 3, 2), in frame order.

    With `smooth`, each frame's nose bias is blended with the previous frame's smoothed bias
    (0.2 * prev + 0.8 * current; the first frame takes its own) and added to the translation, as upstream does.
    Returns the matrices and the last smoothed bias, so a caller that aligns a clip in pieces can carry it on."""
    anchors = np.asarray(anchors, dtype=np.float64)
    if anchors.ndim != 3 or anchors.shape[1:] != (3, 2):
        raise ValueError(f"expected anchors of shape (n, 3, 2), got {anchors.shape}")
    out = np.empty((anchors.shape[0], 2, 3), dtype=np.float64)
    bias = prev_bias
    for i, a in enumerate(anchors):
        m = similarity_transform(a, template.points)
        if smooth:
            cur = nose_bias(a, template.points)
            bias = cur if bias is None else BIAS_MEMORY * bias + (1 - BIAS_MEMORY) * cur
            m[:, 2] += bias
        out[i] = m
    return out, bias


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix (or a batch (..., 2, 3))."""
    m = np.asarray(matrix, dtype=np.float64)
    a = m[..., :2]
    inv_a = np.linalg.inv(a)
    t = -(inv_a @ m[..., 2:3])
    return np.concatenate([inv_a, t], axis=-1)


def crop_footprint(
    matrix: np.ndarray, crop_size: tuple[int, int], frame_hw: tuple[int, int], pad: int
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the frame pixels that the crop `matrix` maps (frame -> crop) covers, `pad` pixels
    wider on every side, clipped to the frame."""
    w, h = crop_size
    inv = invert_affine(matrix)
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    pts = corners @ inv[:, :2].T + inv[:, 2]
    fh, fw = frame_hw
    x0 = int(max(np.floor(pts[:, 0].min()) - pad, 0))
    y0 = int(max(np.floor(pts[:, 1].min()) - pad, 0))
    x1 = int(min(np.ceil(pts[:, 0].max()) + pad + 1, fw))
    y1 = int(min(np.ceil(pts[:, 1].max()) + pad + 1, fh))
    return x0, y0, max(x1, x0), max(y1, y0)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (..., 2) points."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, template: AlignTemplate) -> np.ndarray:
    """The aligned face: warp into the (W, H) crop (bilinear, fill 127), then resize to R x R (Lanczos-4), uint8."""
    import cv2

    w, h = template.crop_size
    crop = cv2.warpAffine(
        image,
        np.asarray(matrix, np.float64),
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(FILL_VALUE,) * 3,
    )
    r = template.resolution
    return cv2.resize(crop, (r, r), interpolation=cv2.INTER_LANCZOS4)


def crop_to_resolution_matrix(template: AlignTemplate) -> np.ndarray:
    """The (2, 3) scaling from crop pixels (W, H) to the R x R face image (pixel centres kept aligned)."""
    w, h = template.crop_size
    r = template.resolution
    sx, sy = r / w, r / h
    # cv2.resize maps pixel centres: x' + 0.5 = (x + 0.5) * s
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])


def frame_to_face_matrix(matrix: np.ndarray, template: AlignTemplate) -> np.ndarray:
    """Frame -> R x R face image: the alignment followed by the crop resize; e.g. to place landmarks on the face."""
    s = crop_to_resolution_matrix(template)
    m = np.asarray(matrix, np.float64)
    return np.concatenate([s[:, :2] @ m[:, :2], (s[:, :2] @ m[:, 2] + s[:, 2])[:, None]], axis=1)


def similarity_to_template(
    points: np.ndarray, template_points: np.ndarray, indices: tuple[int, ...] | None = None
) -> np.ndarray:
    """(2, 3) similarity taking mesh points (478, 2) (or the `indices` subset) onto template points of the same length."""
    src = np.asarray(points, np.float64)
    if indices is not None:
        src = src[list(indices)]
    return similarity_transform(src, template_points)


def face_centred_crop_matrix(
    points: np.ndarray, size: int = 512, eye_distance: float = 0.22, eye_line: float = 0.40
) -> np.ndarray:
    """(2, 3) frame -> size x size matrix of an upright, face-centred portrait crop of a still.

    Scale and translation only (the head keeps its tilt, the photo is not rotated): the pupils end up
    eye_distance * size apart, their midpoint at (size / 2, eye_line * size). Defaults frame head and shoulders."""
    p = np.asarray(points, np.float64)
    lp, rp = p[mesh.LEFT_PUPIL], p[mesh.RIGHT_PUPIL]
    scale = eye_distance * size / max(float(np.linalg.norm(rp - lp)), 1e-6)
    mid = (lp + rp) / 2
    return np.array([[scale, 0.0, size / 2 - scale * mid[0]], [0.0, scale, eye_line * size - scale * mid[1]]])
