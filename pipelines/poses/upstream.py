"""Import upstream EchoMimic V2 pose folders (`{i}.npy` per frame, a DWPose dict saved with `numpy.save`) safely.

Those files are pickles (an object array holding a dict); `numpy.load(allow_pickle=True)` would run any code a
crafted file names. Here the pickle stream is read by an unpickler that knows only numpy's array and dtype
reconstruction: dicts, lists, tuples, numbers, strings and arrays come through, every other global is refused.
Only the hands, their scores, the body's shoulders (for alignment) and the drawing window are kept.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InputError
from pipelines.poses.track import N_POINTS, SEEN, HandPoses

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
UPSTREAM_FPS = 24.0  # infer.py --fps


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name} (only numpy arrays are accepted)")


def read_npy(path: Path) -> Any:
    """The object in a .npy file: plain arrays directly, pickled containers through the restricted unpickler."""
    with path.open("rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(f)
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        obj = _ArraysOnly(io.BytesIO(f.read())).load()
    arr = np.asarray(obj)
    return arr.reshape(shape).item() if shape == () else arr


def _frame(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[int, ...]]:
    try:
        d = read_npy(path)
    except (pickle.UnpicklingError, ValueError, EOFError, OSError, AttributeError, TypeError) as exc:
        raise InputError(path, None, f"not a plain-array pose file: {exc}") from None
    if not isinstance(d, dict) or "hands" not in d:
        raise InputError(path, "hands", "expected a DWPose dict with 'hands' (2 x 21 x 2)")
    hands = np.asarray(d["hands"], np.float64)
    scores = np.asarray(d.get("hands_score", np.ones(hands.shape[:2])), np.float64)
    if hands.shape != (2, N_POINTS, 2) or scores.shape != (2, N_POINTS):
        raise InputError(
            path, "hands", f"expected hands (2, 21, 2) and hands_score (2, 21), got {hands.shape}"
        )
    params = tuple(int(v) for v in d.get("draw_pose_params", ()))
    anchor = None
    bodies = d.get("bodies")
    if isinstance(bodies, dict) and "candidate" in bodies:
        cand = np.asarray(bodies["candidate"], np.float64)
        score = np.asarray(bodies.get("score", np.ones((1, len(cand)))), np.float64).reshape(-1)
        # OpenPose body order: 2 = right shoulder, 5 = left shoulder
        if cand.shape[0] >= 6 and score.shape[0] >= 6 and min(score[2], score[5]) >= SEEN:
            r, left = cand[2], cand[5]
            anchor = np.array([(r[0] + left[0]) / 2, (r[1] + left[1]) / 2, abs(left[0] - r[0])])
    return hands, np.clip(scores, 0.0, 1.0), anchor, params


def import_pose_folder(folder: Path, fps: float = UPSTREAM_FPS) -> HandPoses:
    """An upstream pose folder (0.npy, 1.npy, ...) as HandPoses in the fractions of the drawn image."""
    files = sorted(
        (p for p in folder.glob("*.npy") if re.fullmatch(r"\d+", p.stem)), key=lambda p: int(p.stem)
    )
    if not files:
        raise InputError(folder, None, "no per-frame pose files (0.npy, 1.npy, ...) in this folder")
    points, scores, anchors = [], [], []
    for path in files:
        hands, sc, anchor, params = _frame(path)
        if len(params) == 6:
            # the pose was drawn into rows rb:re, columns cb:ce of an imh x imw image: map into the whole image
            imh, imw, rb, re_, cb, ce = params
            if imh > 0 and imw > 0 and re_ > rb and ce > cb:
                hands = hands * [(ce - cb) / imw, (re_ - rb) / imh] + [cb / imw, rb / imh]
                if anchor is not None:
                    anchor = anchor * [(ce - cb) / imw, (re_ - rb) / imh, (ce - cb) / imw] + [
                        cb / imw,
                        rb / imh,
                        0,
                    ]
        points.append(hands)
        scores.append(sc)
        if anchor is not None:
            anchors.append(anchor)
    aspect = 1.0
    if len(params) == 6 and params[0] > 0:
        aspect = params[1] / params[0]
    return HandPoses(
        points=np.asarray(points, np.float32),
        scores=np.asarray(scores, np.float32),
        fps=fps,
        aspect=aspect,
        anchor=np.median(anchors, axis=0).astype(np.float32) if anchors else None,
    )
