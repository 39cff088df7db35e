"""HandPoses: per-frame keypoints of two hands, normalised to the frame they were seen in, and what to do with them.

Coordinates are fractions of the frame's width (x) and height (y), as upstream's DWPose files hold them. Slot 0 is
the person's left hand, slot 1 the right (DWPose's order). A score of 0 means the point was not seen; points are
drawn only where their score is above zero and both coordinates are inside the frame (as upstream draws them).

The `anchor` is where the body was in that frame: shoulder midpoint (x, y) and shoulder width (in frame widths).
Aligning a track to a persona image maps one anchor onto the other (scale and offset), so gestures recorded from
someone else, farther from the camera or off-centre, land on the persona's own body.

Files are .npz written with `numpy.savez` and read with allow_pickle=False: plain arrays only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.errors import InputError

FORMAT_VERSION = 1
N_POINTS = 21
SEEN = 0.3  # a point below this score counts as unseen when blending or aligning


@dataclass(frozen=True)
class HandPoses:
    points: np.ndarray  # (N, 2, 21, 2) float32
    scores: np.ndarray  # (N, 2, 21) float32 in [0, 1]
    fps: float
    aspect: float  # width / height of the frame the points are fractions of
    anchor: np.ndarray | None = None  # (3,) float32: shoulder centre x, y and shoulder width; None = unknown

    def __post_init__(self) -> None:
        n = self.points.shape[0] if self.points.ndim == 4 else -1
        if self.points.shape != (n, 2, N_POINTS, 2) or self.scores.shape != (n, 2, N_POINTS) or n < 1:
            raise ValueError(
                f"hand poses need points (N, 2, {N_POINTS}, 2) and scores (N, 2, {N_POINTS}) with N >= 1, got "
                f"{self.points.shape} and {self.scores.shape}"
            )
        if not (np.isfinite(self.points).all() and np.isfinite(self.scores).all()):
            raise ValueError("hand poses hold non-finite values")
        if not (self.fps > 0 and self.aspect > 0):
            raise ValueError(f"hand poses need fps > 0 and aspect > 0, got {self.fps} and {self.aspect}")
        if self.anchor is not None and (self.anchor.shape != (3,) or not self.anchor[2] > 0):
            raise ValueError(f"a body anchor is (x, y, shoulder width > 0), got {self.anchor}")

    def __len__(self) -> int:
        return self.points.shape[0]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays = {
            "version": np.array(FORMAT_VERSION),
            "points": self.points.astype(np.float32),
            "scores": self.scores.astype(np.float32),
            "fps": np.array(self.fps, np.float64),
            "aspect": np.array(self.aspect, np.float64),
        }
        if self.anchor is not None:
            arrays["anchor"] = self.anchor.astype(np.float32)
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, field: str | None = "poses") -> HandPoses:
        """Read a .npz written by `save`; anything else is a one-line InputError naming the file."""
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise InputError(path, field, "file not found") from None
        except (OSError, ValueError) as exc:
            raise InputError(path, field, f"not a hand-pose .npz of plain arrays ({exc})") from None
        missing = [k for k in ("points", "scores", "fps", "aspect") if k not in data]
        if missing:
            raise InputError(path, field, f"not a talkreel hand-pose file: no {', '.join(missing)}")
        if int(data.get("version", FORMAT_VERSION)) > FORMAT_VERSION:
            raise InputError(path, field, f"written by a newer talkreel (format {int(data['version'])})")
        try:
            return cls(
                points=data["points"].astype(np.float32),
                scores=data["scores"].astype(np.float32),
                fps=float(data["fps"]),
                aspect=float(data["aspect"]),
                anchor=data["anchor"].astype(np.float32) if "anchor" in data else None,
            )
        except (TypeError, ValueError) as exc:
            raise InputError(path, field, str(exc)) from None

    def aligned(self, anchor: np.ndarray | None, aspect: float) -> HandPoses:
        """The track moved onto another frame whose body anchor and aspect are given (scale and offset only).

        Without both anchors the fractions are kept as they are (the two frames are assumed to frame the body alike).
        """
        pts = self.points.astype(np.float64).copy()
        if self.anchor is not None and anchor is not None:
            # work in units of the frame width on both axes, so the scale is the same horizontally and vertically
            src = np.array([self.anchor[0], self.anchor[1] / self.aspect])
            dst = np.array([anchor[0], anchor[1] / aspect])
            scale = float(anchor[2]) / float(self.anchor[2])
            xy = pts * [1.0, 1.0 / self.aspect]
            xy = dst + (xy - src) * scale
            pts = xy * [1.0, aspect]
        return HandPoses(pts.astype(np.float32), self.scores, self.fps, aspect, anchor)

    def at_fps(self, fps: float) -> HandPoses:
        """Resampled to another frame rate (nearest frame: keypoints jumping between detections stay as detected)."""
        if abs(fps - self.fps) < 1e-9:
            return self
        n = max(1, round(len(self) * fps / self.fps))
        idx = np.minimum((np.arange(n) * self.fps / fps).round().astype(int), len(self) - 1)
        return HandPoses(self.points[idx], self.scores[idx], fps, self.aspect, self.anchor)

    def looped(self, n_frames: int, fade: int) -> HandPoses:
        """Exactly `n_frames` frames: the track, then again and again, each return to the start cross-faded over
        `fade` frames (ping-pong when the track is too short to fade)."""
        n = len(self)
        if n_frames <= n:
            idx = np.arange(n_frames)
            return HandPoses(self.points[idx], self.scores[idx], self.fps, self.aspect, self.anchor)
        fade = int(min(fade, n // 2))
        if fade < 2:
            period = max(1, 2 * n - 2)
            phase = np.arange(n_frames) % period
            idx = np.where(phase < n, phase, period - phase)
            return HandPoses(self.points[idx], self.scores[idx], self.fps, self.aspect, self.anchor)
        period = n - fade
        points = np.empty((n_frames, *self.points.shape[1:]), np.float32)
        scores = np.empty((n_frames, *self.scores.shape[1:]), np.float32)
        for i in range(n_frames):
            phase = i % period
            if i < period or phase >= fade:
                points[i], scores[i] = self.points[phase], self.scores[phase]
                continue
            # the end of the previous pass (frames period .. n-1) fades into the start of this one
            w = (phase + 0.5) / fade
            points[i], scores[i] = _blend(
                self.points[period + phase],
                self.scores[period + phase],
                self.points[phase],
                self.scores[phase],
                w,
            )
        return HandPoses(points, scores, self.fps, self.aspect, self.anchor)


def _blend(pa: np.ndarray, sa: np.ndarray, pb: np.ndarray, sb: np.ndarray, w: float):
    """Points (2, 21, 2) and scores (2, 21) of a moving from a to b by w; a point seen on one side only is not
    moved towards the other side's (meaningless) coordinates, it fades in or out where it is."""
    seen_a, seen_b = sa >= SEEN, sb >= SEEN
    both = (seen_a & seen_b)[..., None]
    pts = np.where(both, (1 - w) * pa + w * pb, np.where(seen_b[..., None], pb, pa))
    return pts.astype(np.float32), ((1 - w) * sa + w * sb).astype(np.float32)
