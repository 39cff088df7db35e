"""Hand keypoints and body anchors from images and videos, with the MediaPipe models the pinned wheel ships
(hands: palm detector + 21-point hand landmarks; pose: BlazePose full).

MediaPipe names hands as if the picture were mirrored (a selfie); a camera looking at a person sees the person's
left hand on the picture's right. A hand goes to slot 0 (person's left) or 1 (right) by which of the body's wrists
it is nearer, and by MediaPipe's label only where no body was found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.errors import InputError
from pipelines.face.landmarks import _quiet_native_stderr
from pipelines.poses.track import N_POINTS, SEEN, HandPoses

# BlazePose landmark indices
_L_SHOULDER, _R_SHOULDER, _L_ELBOW, _R_ELBOW, _L_WRIST, _R_WRIST = 11, 12, 13, 14, 15, 16


@dataclass(frozen=True)
class Body:
    """Arm landmarks of one person in frame fractions; rows (left, right); visibility in [0, 1]."""

    shoulders: np.ndarray  # (2, 2)
    elbows: np.ndarray  # (2, 2)
    wrists: np.ndarray  # (2, 2)
    visibility: np.ndarray  # (3, 2): shoulders, elbows, wrists
    aspect: float

    @property
    def anchor(self) -> np.ndarray | None:
        """(x, y, shoulder width in frame widths), None when a shoulder is not seen."""
        if self.visibility[0].min() < SEEN:
            return None
        centre = self.shoulders.mean(axis=0)
        return np.array([centre[0], centre[1], abs(self.shoulders[0, 0] - self.shoulders[1, 0])], np.float32)


class HandTracker:
    """MediaPipe hands + pose kept alive across frames ("video": tracking from the previous frame, in order)."""

    def __init__(self, video: bool):
        with _quiet_native_stderr():
            import mediapipe as mp

            self._hands = mp.solutions.hands.Hands(
                static_image_mode=not video, max_num_hands=2, model_complexity=1, min_detection_confidence=0.3
            )
            self._pose = mp.solutions.pose.Pose(static_image_mode=not video, model_complexity=1)
            blank = np.zeros((64, 64, 3), np.uint8)
            self._hands.process(blank)
            self._pose.process(blank)

    def close(self) -> None:
        self._hands.close()
        self._pose.close()

    def body(self, image: np.ndarray) -> Body | None:
        with _quiet_native_stderr():
            result = self._pose.process(np.ascontiguousarray(image))
        if result.pose_landmarks is None:
            return None
        lm = result.pose_landmarks.landmark

        def pair(a: int, b: int) -> np.ndarray:
            return np.array([[lm[a].x, lm[a].y], [lm[b].x, lm[b].y]], np.float32)

        vis = np.array(
            [[lm[i].visibility for i in pair_] for pair_ in ((11, 12), (13, 14), (15, 16))], np.float32
        )
        h, w = image.shape[:2]
        return Body(
            pair(_L_SHOULDER, _R_SHOULDER), pair(_L_ELBOW, _R_ELBOW), pair(_L_WRIST, _R_WRIST), vis, w / h
        )

    def hands(self, image: np.ndarray, body: Body | None = None) -> tuple[np.ndarray, np.ndarray]:
        """points (2, 21, 2) and scores (2, 21) of the hands in one RGB frame (scores 0 where a hand is not seen)."""
        points = np.zeros((2, N_POINTS, 2), np.float32)
        scores = np.zeros((2, N_POINTS), np.float32)
        with _quiet_native_stderr():
            result = self._hands.process(np.ascontiguousarray(image))
        found = []
        for lms, handed in zip(result.multi_hand_landmarks or [], result.multi_handedness or [], strict=True):
            pts = np.array([[p.x, p.y] for p in lms.landmark], np.float32)
            label = handed.classification[0].label  # mirrored naming: "Right" = the person's left hand
            found.append((pts, 0 if label == "Right" else 1, float(handed.classification[0].score)))
        if body is not None and body.visibility[2].max() >= SEEN and found:
            # nearest wrist decides; with two hands, the assignment with the smaller total distance
            d = np.array([[np.linalg.norm(p[0] - body.wrists[s]) for s in (0, 1)] for p, _, _ in found])
            if len(found) == 1:
                found = [(found[0][0], int(d[0].argmin()), found[0][2])]
            else:
                straight = d[0, 0] + d[1, 1]
                crossed = d[0, 1] + d[1, 0]
                slots = (0, 1) if straight <= crossed else (1, 0)
                found = [(p, s, c) for (p, _, c), s in zip(found[:2], slots, strict=True)]
        for pts, slot, _ in sorted(found, key=lambda f: -f[2]):
            if scores[slot].max() == 0:
                points[slot], scores[slot] = pts, 1.0
        return points, scores


def photo_landmarks(image: np.ndarray) -> tuple[Body | None, np.ndarray, np.ndarray]:
    """The body and the hands seen in one still image."""
    tracker = HandTracker(video=False)
    try:
        body = tracker.body(image)
        points, scores = tracker.hands(image, body)
    finally:
        tracker.close()
    return body, points, scores


def extract_video(
    path: Path, fps: float | None = None, progress: Callable[[int], None] | None = None
) -> HandPoses:
    """Hand keypoints of every frame of a video (at its own rate, or resampled to `fps`), with the median body
    anchor of the frames where both shoulders were seen."""
    from pipelines.media.probe import probe
    from pipelines.media.video_in import open_source

    info = probe(path)
    if not info.has_video or info.duration <= 0 or (info.width or 0) == 0:
        raise InputError(path, "--from", "expected a video of the gestures (a still image has no motion)")
    rate = float(fps or info.fps or 24.0)
    source = open_source(path, rate)
    tracker = HandTracker(video=True)
    points, scores, anchors = [], [], []
    aspect = None
    try:
        for i, frame in enumerate(source):
            aspect = frame.shape[1] / frame.shape[0]
            body = tracker.body(frame)
            p, s = tracker.hands(frame, body)
            points.append(p)
            scores.append(s)
            if body is not None and body.anchor is not None:
                anchors.append(body.anchor)
            if progress is not None:
                progress(i + 1)
    finally:
        tracker.close()
    if not points:
        raise InputError(path, "--from", "no frames could be read")
    scores_arr = np.asarray(scores, np.float32)
    if scores_arr.max() == 0:
        raise InputError(path, "--from", "no hands were found in any frame")
    return HandPoses(
        np.asarray(points, np.float32),
        scores_arr,
        rate,
        float(aspect),
        np.median(anchors, axis=0).astype(np.float32) if anchors else None,
    )
