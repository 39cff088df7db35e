"""The persona's face over the frames of a clip: landmarks per frame, found flags, and smoothed landmarks.

`track_faces` streams the frames once through a video-mode MediaPipe detector (up to `max_faces` faces per frame) and
keeps only landmarks. Then it picks the persona's face consistently over time:
1. faces are linked frame to frame into tracklets (nearest centre within half a face size, similar size, allowing
   short dropouts);
2. the tracklet with the largest summed face size (big AND long-lived) is the persona, unless the persona picks
   a face (`pick`, the persona's `face`): then the tracklet of the face picked on the first frame that shows one
   (pipelines.face.pick; frames are then analysed as stills, as a photo's pick is made) is the persona;
3. other tracklets of comparable size fill the frames the persona's tracklet lacks when they are the same face:
   where they overlap it in time they coincide with it everywhere (MediaPipe's video mode sometimes reports one face
   twice and hands over between the two), otherwise they start or end near where the persona was at the nearest
   chosen frame (the same face after a lost detection); a different person elsewhere in the picture never joins,
   however large on a given frame.
Short dropouts (at most `bridge` frames between found frames) are interpolated and count as found; longer gaps hold
the nearest found landmarks with found = False, so consumers pass those frames through (see blend.passthrough_crossfade).
`detected` keeps what MediaPipe actually saw.

Smoothing is a centred Savitzky-Golay filter (quadratic, `smooth_window` frames) over each run of found frames:
zero phase, so the mouth is not delayed, and a quadratic fit keeps the peaks of fast mouth motion that a plain
moving average would flatten.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.face import mesh
from pipelines.face.landmarks import FaceLandmarks, LandmarkDetector
from pipelines.face.pick import FacePickError, pick_face

_LINK_DISTANCE = 0.5  # x face size: max centre jump between consecutive frames of one tracklet
_LINK_SIZE_RATIO = 1.5  # max size change between consecutive frames of one tracklet
_LINK_MAX_SKIP = 5  # frames a tracklet may miss and still be continued
_JOIN_DISTANCE = 1.0  # x face size: how near a later/earlier tracklet must start/end to the chosen track
_JOIN_SIZE_RATIO = 1.6
PICK_MAX_FACES = 4  # faces per frame a pick counts among (as detect_faces, which validate and photos use)


@dataclass
class FaceTrack:
    """Arrays over the n frames of a clip (see the module docstring for their meaning)."""

    points: np.ndarray  # (n, 478, 2) float32, raw landmarks of the persona's face (gaps filled)
    z: np.ndarray  # (n, 478) float32
    smoothed: np.ndarray  # (n, 478, 2) float32
    found: np.ndarray  # (n,) bool: a face is available for this frame (detected or bridged)
    detected: np.ndarray  # (n,) bool: MediaPipe found the persona's face in this frame
    frame_size: tuple[int, int]  # (width, height)

    def __len__(self) -> int:
        return int(self.found.shape[0])

    @property
    def n_found(self) -> int:
        return int(self.found.sum())

    def face(self, i: int, smoothed: bool = True) -> FaceLandmarks:
        return FaceLandmarks(points=(self.smoothed if smoothed else self.points)[i], z=self.z[i])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays for the ArrayCache (no pickle)."""
        return {
            "points": self.points,
            "z": self.z,
            "smoothed": self.smoothed,
            "found": self.found,
            "detected": self.detected,
            "frame_size": np.asarray(self.frame_size, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FaceTrack:
        n = arrays["found"].shape[0]
        track = cls(
            points=np.asarray(arrays["points"], np.float32),
            z=np.asarray(arrays["z"], np.float32),
            smoothed=np.asarray(arrays["smoothed"], np.float32),
            found=np.asarray(arrays["found"], bool),
            detected=np.asarray(arrays["detected"], bool),
            frame_size=tuple(int(v) for v in arrays["frame_size"]),
        )
        if track.points.shape != (n, mesh.N_POINTS, 2) or track.smoothed.shape != track.points.shape:
            raise ValueError(f"inconsistent face-track arrays: points {track.points.shape}, {n} frames")
        return track


@dataclass
class _Tracklet:
    frames: list[int]
    faces: list[FaceLandmarks]

    @property
    def score(self) -> float:
        return float(sum(f.size for f in self.faces))

    @property
    def median_size(self) -> float:
        return float(np.median([f.size for f in self.faces]))


def _link(per_frame: list[list[FaceLandmarks]]) -> list[_Tracklet]:
    tracklets: list[_Tracklet] = []
    active: list[_Tracklet] = []
    for t, faces in enumerate(per_frame):
        active = [tr for tr in active if t - tr.frames[-1] <= _LINK_MAX_SKIP]
        pairs = []
        for fi, face in enumerate(faces):
            for ti, tr in enumerate(active):
                last = tr.faces[-1]
                d = float(np.linalg.norm(face.centre - last.centre))
                ratio = max(face.size, last.size) / max(min(face.size, last.size), 1e-6)
                if d < _LINK_DISTANCE * last.size and ratio < _LINK_SIZE_RATIO:
                    pairs.append((d, fi, ti))
        used_f, used_t = set(), set()
        for _, fi, ti in sorted(pairs):
            if fi in used_f or ti in used_t:
                continue
            used_f.add(fi)
            used_t.add(ti)
            active[ti].frames.append(t)
            active[ti].faces.append(faces[fi])
        for fi, face in enumerate(faces):
            if fi not in used_f:
                tr = _Tracklet([t], [face])
                tracklets.append(tr)
                active.append(tr)
    return tracklets


def _choose(
    tracklets: list[_Tracklet], n: int, anchor: tuple[int, FaceLandmarks] | None = None
) -> list[FaceLandmarks | None]:
    chosen: list[FaceLandmarks | None] = [None] * n
    if not tracklets:
        return chosen
    ranked = sorted(tracklets, key=lambda tr: tr.score, reverse=True)
    main = ranked[0] if anchor is None else _picked(tracklets, *anchor)
    for t, f in zip(main.frames, main.faces, strict=True):
        chosen[t] = f
    ref_size = main.median_size
    for tr in ranked:
        if tr is main:
            continue
        ratio = max(tr.median_size, ref_size) / max(min(tr.median_size, ref_size), 1e-6)
        if ratio > _JOIN_SIZE_RATIO:
            continue
        overlap = [(chosen[t], f) for t, f in zip(tr.frames, tr.faces, strict=True) if chosen[t] is not None]
        if overlap:
            # MediaPipe's video mode sometimes reports one face twice (tracked + re-detected) and hands over
            # between the two: a tracklet that coincides with the persona wherever both exist is the persona.
            if not all(_same_face(a, b, _LINK_DISTANCE) for a, b in overlap):
                continue
        else:
            before = next((chosen[t] for t in range(tr.frames[0] - 1, -1, -1) if chosen[t] is not None), None)
            after = next((chosen[t] for t in range(tr.frames[-1] + 1, n) if chosen[t] is not None), None)
            near = [
                _same_face(ref, own, _JOIN_DISTANCE)
                for ref, own in ((before, tr.faces[0]), (after, tr.faces[-1]))
                if ref is not None
            ]
            if not any(near):
                continue
        for t, f in zip(tr.frames, tr.faces, strict=True):
            if chosen[t] is None:
                chosen[t] = f
    return chosen


def _picked(tracklets: list[_Tracklet], t0: int, face: FaceLandmarks) -> _Tracklet:
    """The tracklet of the face picked on frame t0: the first to come near it from t0 on (the nearest at that
    frame); FacePickError when none does (the video detector never saw the picked face)."""
    best: tuple[int, float, int] | None = None
    for k, tr in enumerate(tracklets):
        for t, f in zip(tr.frames, tr.faces, strict=True):
            d = float(np.linalg.norm(f.centre - face.centre))
            if t >= t0 and d < _JOIN_DISTANCE * face.size:
                best = min(best or (t, d, k), (t, d, k))
                break
    if best is None:
        raise FacePickError("the picked face is not followed in the video (no face track near it)")
    return tracklets[best[2]]


def _same_face(ref: FaceLandmarks, other: FaceLandmarks, distance: float) -> bool:
    return float(np.linalg.norm(ref.centre - other.centre)) < distance * ref.size


def _savgol_coefficients(window: int, order: int = 2) -> np.ndarray:
    half = window // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    basis = np.vander(x, order + 1, increasing=True)
    return np.linalg.pinv(basis)[0]  # weights giving the fitted value at the window's centre


def smooth_landmarks(points: np.ndarray, found: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred quadratic Savitzky-Golay smoothing of (n, ..., 2) points along time, within runs of found frames.

    Runs shorter than the window get the largest odd window that fits; ends are handled by reflecting the run about
    its first/last sample (odd extension), which keeps a linear trend instead of flattening it."""
    points = np.asarray(points, np.float32)
    out = points.copy()
    if window < 3:
        return out
    window |= 1
    found = np.asarray(found, bool)
    n = found.shape[0]
    t = 0
    while t < n:
        if not found[t]:
            t += 1
            continue
        start = t
        while t < n and found[t]:
            t += 1
        run = points[start:t].astype(np.float64)
        w = min(window, len(run) if len(run) % 2 else len(run) - 1)
        if w < 3:
            continue
        half = w // 2
        coeff = _savgol_coefficients(w)
        head = 2 * run[0] - run[half:0:-1]
        tail = 2 * run[-1] - run[-2 : -half - 2 : -1]
        padded = np.concatenate([head, run, tail], axis=0)
        acc = np.zeros_like(run)
        for k, c in enumerate(coeff):
            acc += c * padded[k : k + len(run)]
        out[start:t] = acc.astype(np.float32)
    return out


def _fill_gaps(points: np.ndarray, z: np.ndarray, detected: np.ndarray, bridge: int) -> np.ndarray:
    """Fill frames without a face in place; returns `found` (detected + bridged short gaps)."""
    found = detected.copy()
    idx = np.flatnonzero(detected)
    if idx.size == 0:
        return found
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if b - a <= 1:
            continue
        gap = b - a - 1
        for t in range(a + 1, b):
            if gap <= bridge:
                w = (t - a) / (b - a)
                points[t] = (1 - w) * points[a] + w * points[b]
                z[t] = (1 - w) * z[a] + w * z[b]
                found[t] = True
            else:  # hold the nearer neighbour
                src = a if t - a <= b - t else b
                points[t], z[t] = points[src], z[src]
    points[: idx[0]], z[: idx[0]] = points[idx[0]], z[idx[0]]
    points[idx[-1] + 1 :], z[idx[-1] + 1 :] = points[idx[-1]], z[idx[-1]]
    return found


def track_faces(
    frames: Iterable[np.ndarray],
    max_faces: int = 3,
    smooth_window: int = 5,
    bridge: int = 2,
    pick: Any = None,
) -> FaceTrack:
    """Track the persona's face over RGB uint8 frames (consumed once, in order; only landmarks are kept).
    `pick` is the persona's `face` (None: the largest, most persistent face); FacePickError when it names a face
    the first frame with faces does not show."""
    per_frame: list[list[FaceLandmarks]] = []
    frame_size = (0, 0)
    anchor: tuple[int, FaceLandmarks] | None = None
    # A picked face may be one that video mode never sees (its short-range detector misses the smaller faces of a
    # group): with a pick, every frame is analysed as a still (the full-range pass too), as a photo's pick is.
    mode, most = ("video", max_faces) if pick is None else ("image", max(max_faces, PICK_MAX_FACES))
    with LandmarkDetector(mode, max_faces=most) as detector:
        for frame in frames:
            if not per_frame:
                frame_size = (int(frame.shape[1]), int(frame.shape[0]))
            faces = detector.detect(frame)
            if pick is not None and anchor is None and faces:
                anchor = (len(per_frame), pick_face(faces, pick, frame_size))
            per_frame.append(faces)
    n = len(per_frame)
    chosen = _choose(_link(per_frame), n, anchor)
    points = np.zeros((n, mesh.N_POINTS, 2), np.float32)
    z = np.zeros((n, mesh.N_POINTS), np.float32)
    detected = np.zeros(n, bool)
    for t, face in enumerate(chosen):
        if face is not None:
            points[t], z[t], detected[t] = face.points, face.z, True
    del per_frame, chosen
    found = _fill_gaps(points, z, detected, bridge)
    smoothed = smooth_landmarks(points, found, smooth_window)
    return FaceTrack(points, z, smoothed, found, detected, frame_size)


def track_persona(frames: Iterable[np.ndarray], pick: Any, source: str | Path) -> FaceTrack:
    """track_faces over a persona's video following its `face` pick; an InputError on that field, naming
    `source`, when the pick names a face the video does not show."""
    from pipelines.errors import InputError

    try:
        return track_faces(frames, pick=pick)
    except FacePickError as exc:
        raise InputError(source, "face", f"{exc} in the persona video") from None
