"""A generated "hands at rest, moving a little" track for personas that have no recorded gestures.

Each hand starts where the photo has it: the hand MediaPipe finds in the photo, else a relaxed hand laid along the
forearm at the photo's wrist (or where the forearm points, when the wrist is out of the picture but the elbow is
not). A hand the photo cannot place is left undrawn, as upstream leaves unseen hands. The motion is a slow sway
(sums of two sinusoids per axis with seeded phases, ~3-7 s periods, a few percent of the shoulder width) and a
small rotation about the wrist: smooth, never a jump, and the same for the same seed. Where the emotion track is
expressive (`emphasis`, 0..1 per frame, smoothed over half a second), the hands sway up to three times as much and
lift by up to a fifth of the shoulder width.
"""

from __future__ import annotations

import numpy as np

from pipelines.poses.extract import Body
from pipelines.poses.track import N_POINTS, SEEN, HandPoses

# A relaxed right hand seen from the front, fingers pointing along +y, wrist at the origin, in hand lengths
# (wrist to middle fingertip = 1). The left hand is its mirror image.
_TEMPLATE = np.array(
    [
        [0.00, 0.00],
        [-0.14, 0.10], [-0.26, 0.22], [-0.34, 0.34], [-0.40, 0.45],  # thumb
        [-0.12, 0.50], [-0.14, 0.69], [-0.15, 0.81], [-0.16, 0.92],  # index
        [0.00, 0.53], [0.00, 0.74], [0.00, 0.87], [0.00, 1.00],  # middle
        [0.11, 0.51], [0.12, 0.70], [0.13, 0.82], [0.14, 0.92],  # ring
        [0.21, 0.45], [0.24, 0.59], [0.26, 0.68], [0.28, 0.77],  # pinky
    ],
    np.float64,
)  # fmt: skip
HAND_LENGTH = 0.45  # in shoulder widths
SWAY = 0.035  # sway amplitude, in shoulder widths
TURN = np.deg2rad(4.0)  # rotation amplitude about the wrist
DEFAULT_SHOULDER_WIDTH = 0.4  # of the frame width, when the photo shows no shoulders
EMPHASIS_SWAY = 2.0  # extra sway at full emphasis (x3 in all)
EMPHASIS_LIFT = 0.2  # lift at full emphasis, in shoulder widths
EXPRESSIVE = ("smile", "brow_raise", "brow_lower", "brow_inner", "eye_open", "jaw")  # not blinks or head idle


def emphasis_from_expression(values: np.ndarray, params: tuple[str, ...], fps: float) -> np.ndarray:
    """(n,) in [0, 1]: how expressive each frame of an expression track is, smoothed over half a second."""
    cols = [params.index(p) for p in EXPRESSIVE if p in params]
    raw = np.clip(np.abs(values[:, cols]).sum(axis=1), 0.0, 1.0) if cols else np.zeros(len(values))
    k = max(1, round(0.5 * fps))
    kernel = np.ones(k) / k
    padded = np.pad(raw, (k // 2, k - 1 - k // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")[: len(values)]


def _laid_hand(slot: int, wrist: np.ndarray, direction: np.ndarray, length: float) -> np.ndarray:
    """The template hand (2-D, frame-width units) at `wrist`, fingers along `direction`."""
    t = _TEMPLATE.copy()
    if slot == 0:  # the person's left hand: the mirror of the template's right hand
        t[:, 0] *= -1
    d = direction / (np.linalg.norm(direction) + 1e-9)
    rot = np.array([[d[1], d[0]], [-d[0], d[1]]])  # maps +y onto d
    return wrist + (t * length) @ rot.T


def _base_hands(body: Body | None, photo_points: np.ndarray, photo_scores: np.ndarray, aspect: float):
    """(2, 21, 2) points in frame-width units and (2,) whether each hand can be placed."""
    to_units = np.array([1.0, 1.0 / aspect])
    width = DEFAULT_SHOULDER_WIDTH
    if body is not None and body.anchor is not None:
        width = float(body.anchor[2])
    base = np.zeros((2, N_POINTS, 2))
    placed = np.zeros(2, bool)
    for slot in (0, 1):
        if photo_scores[slot].max() >= SEEN:
            base[slot] = photo_points[slot] * to_units
            placed[slot] = True
            continue
        if body is None:
            continue
        shoulder, elbow, wrist = (a[slot] * to_units for a in (body.shoulders, body.elbows, body.wrists))
        vis_s, vis_e, vis_w = body.visibility[:, slot]
        inside = 0.0 <= body.wrists[slot, 0] <= 1.0 and 0.0 <= body.wrists[slot, 1] <= 1.0
        if vis_w >= SEEN and inside and vis_e >= SEEN:
            start, direction = wrist, wrist - elbow
        elif vis_e >= SEEN and vis_s >= SEEN:
            start = elbow + (elbow - shoulder) * 0.9  # the forearm is about as long as the upper arm
            direction = elbow - shoulder
        else:
            continue
        base[slot] = _laid_hand(slot, start, direction, HAND_LENGTH * width)
        placed[slot] = True
    return base, placed, width


def rest_poses(
    n_frames: int,
    fps: float,
    seed: int,
    body: Body | None,
    photo_points: np.ndarray,
    photo_scores: np.ndarray,
    aspect: float,
    emphasis: np.ndarray | None = None,
) -> HandPoses:
    """`n_frames` frames of both hands resting where the photo has them, swaying slightly; frame fractions."""
    base, placed, width = _base_hands(body, photo_points, photo_scores, aspect)
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / fps
    points = np.zeros((n_frames, 2, N_POINTS, 2))
    scores = np.zeros((n_frames, 2, N_POINTS), np.float32)
    for slot in (0, 1):
        if not placed[slot]:
            continue
        periods = rng.uniform(3.0, 7.0, size=(3, 2))
        phases = rng.uniform(0, 2 * np.pi, size=(3, 2))
        wave = np.sin(2 * np.pi * t[:, None, None] / periods + phases).mean(axis=2)  # (n, 3), in [-1, 1]
        gain = np.ones(n_frames) if emphasis is None else 1.0 + EMPHASIS_SWAY * np.clip(emphasis, 0, 1)
        offset = wave[:, :2] * SWAY * width * gain[:, None]  # (n, 2)
        if emphasis is not None:
            offset[:, 1] -= EMPHASIS_LIFT * width * np.clip(emphasis, 0, 1)  # up is -y
        angle = wave[:, 2] * TURN
        wrist = base[slot, 0]
        rel = base[slot] - wrist
        cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
        rx = rel[None, :, 0] * cos - rel[None, :, 1] * sin
        ry = rel[None, :, 0] * sin + rel[None, :, 1] * cos
        points[:, slot] = wrist + np.stack([rx, ry], axis=-1) + offset[:, None, :]
        scores[:, slot] = 1.0
    points[..., 1] *= aspect  # frame-width units -> fractions of the height
    # a hand reaching past the picture's edge is drawn cut off there, as a hand would be
    points = np.clip(points, 0.0, 1.0)
    anchor = body.anchor if body is not None else None
    return HandPoses(points.astype(np.float32), scores, fps, aspect, anchor)
