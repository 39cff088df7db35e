"""Is a persona source usable? `inspect_source` looks at a still image, or at frames sampled across a video, and
lists what will go wrong or look worse than it could: no face at all (error), several faces, a small face, a face in
profile (warnings). Used by `talkreel validate` and `talkreel personas check`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pipelines.face.landmarks import FaceLandmarks, detect_faces
from pipelines.media.formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES, media_kind

Severity = Literal["error", "warning"]


MIN_FACE_PX = 96
"""Forehead-to-chin height below which a warning is given: LatentSync's 256 crop maps about 70 template units of face
height to ~190 px, so a face under 96 px is upsampled more than 2x (and 4x for the 512 model) and looks soft."""
MAX_YAW_DEG = 35.0
"""Beyond this the far half of the mouth is hidden and lip motion on it is guesswork."""
VIDEO_SAMPLES = 12
MAX_FACES = 4


@dataclass(frozen=True)
class Problem:
    severity: Severity
    code: str  # unreadable | no_face | face_missing_in_frames | multiple_faces | small_face | profile
    message: str


@dataclass
class SourceReport:
    path: str
    kind: Literal["image", "video", "unknown"]
    width: int = 0
    height: int = 0
    frames_checked: int = 0
    frames_with_face: int = 0
    max_faces: int = 0  # most faces seen in one checked frame
    face_width: float | None = (
        None  # the persona's face (the one that will be used), median over checked frames
    )
    face_height: float | None = None
    face_centre: tuple[float, float] | None = None
    yaw: float | None = None  # degrees, median; see FaceLandmarks.yaw
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not any(p.severity == "error" for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def sample_video_frames(path: str | os.PathLike, n: int = VIDEO_SAMPLES) -> Iterator[np.ndarray]:
    """About `n` RGB frames spread evenly over the video, in display orientation."""
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        total = stream.frames
        rate = float(stream.average_rate or 0)
        if not total and rate and stream.duration and stream.time_base:
            total = int(float(stream.duration * stream.time_base) * rate)
        if not total and rate and container.duration:
            total = int(container.duration / 1_000_000 * rate)
        # unknown length: every 10th frame, so the samples still spread over a few seconds
        step = max(1, -(-total // n)) if total else 10
        taken = 0
        for i, frame in enumerate(container.decode(stream)):
            if i % step:
                continue
            if taken == n:
                break
            taken += 1
            rgb = frame.to_ndarray(format="rgb24")
            turns = int(round((frame.rotation or 0) / 90.0)) % 4
            yield np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def inspect_frames(frames: list[np.ndarray], path: str, kind: Literal["image", "video"]) -> SourceReport:
    """The checks of `inspect_source` on frames already in memory."""
    report = SourceReport(path=path, kind=kind)
    if frames:
        report.height, report.width = frames[0].shape[:2]
    per_frame = [
        detect_faces(frame, max_faces=MAX_FACES) for frame in frames
    ]  # shared detector: many personas
    report.frames_checked = len(frames)
    report.frames_with_face = sum(1 for faces in per_frame if faces)
    report.max_faces = max((len(faces) for faces in per_frame), default=0)
    if report.frames_with_face == 0:
        where = (
            "in the image" if kind == "image" else f"in any of {len(frames)} frames sampled across the video"
        )
        report.problems.append(Problem("error", "no_face", f"no face found {where}"))
        return report

    chosen = _persona_face_per_frame(per_frame)
    faces = [f for f in chosen if f is not None]
    report.face_width = round(_median([f.width for f in faces]), 1)
    report.face_height = round(_median([f.height for f in faces]), 1)
    cx, cy = np.median([f.centre for f in faces], axis=0)
    report.face_centre = (round(float(cx), 1), round(float(cy), 1))
    report.yaw = round(_median([f.yaw for f in faces]), 1)

    if kind == "video" and report.frames_with_face < report.frames_checked:
        report.problems.append(
            Problem(
                "warning",
                "face_missing_in_frames",
                f"no face in {report.frames_checked - report.frames_with_face} of {report.frames_checked} "
                "sampled frames; those frames will pass through unchanged",
            )
        )
    if report.max_faces > 1:
        multi = sum(1 for faces in per_frame if len(faces) > 1)
        where = "" if kind == "image" else f" in {multi} of {report.frames_checked} sampled frames"
        report.problems.append(
            Problem(
                "warning",
                "multiple_faces",
                f"{report.max_faces} faces found{where}; the largest and most persistent one will be used "
                f"(centre x={report.face_centre[0]:.0f}, y={report.face_centre[1]:.0f}, "
                f"{report.face_width:.0f}x{report.face_height:.0f} px)",
            )
        )
    if report.face_height < MIN_FACE_PX:
        report.problems.append(
            Problem(
                "warning",
                "small_face",
                f"face is {report.face_width:.0f}x{report.face_height:.0f} px (forehead to chin); at least "
                f"{MIN_FACE_PX} px tall is recommended, smaller faces are upscaled and look soft",
            )
        )
    if abs(report.yaw) > MAX_YAW_DEG:
        side = "right" if report.yaw > 0 else "left"
        report.problems.append(
            Problem(
                "warning",
                "profile",
                f"face is turned about {abs(report.yaw):.0f} degrees to the {side} (more than {MAX_YAW_DEG:.0f}); "
                "a camera-facing source gives much better lip sync",
            )
        )
    return report


def _persona_face_per_frame(per_frame: list[list[FaceLandmarks]]) -> list[FaceLandmarks | None]:
    """The persona's face in each frame: the face that is large AND recurs across frames, matched by position.

    Each candidate scores the sizes of the faces near it (within one face size) summed over all frames, so a face
    present in every frame beats a slightly larger one that appears once."""
    candidates = [f for faces in per_frame for f in faces]
    best = max(candidates, key=lambda c: _support(c, per_frame))
    chosen: list[FaceLandmarks | None] = []
    for faces in per_frame:
        near = [f for f in faces if np.linalg.norm(f.centre - best.centre) < best.size]
        chosen.append(min(near, key=lambda f: np.linalg.norm(f.centre - best.centre)) if near else None)
    return chosen


def _support(candidate: FaceLandmarks, per_frame: list[list[FaceLandmarks]]) -> float:
    total = 0.0
    for faces in per_frame:
        near = [f.size for f in faces if np.linalg.norm(f.centre - candidate.centre) < candidate.size]
        total += max(near, default=0.0)
    return total


def inspect_source(path: str | os.PathLike) -> SourceReport:
    """Check a persona's face image or video; never raises for bad media (an unreadable file is an error Problem)."""
    p = Path(path)
    kind = media_kind(p) or "unknown"
    if not p.is_file():
        report = SourceReport(path=str(p), kind=kind)
        report.problems.append(Problem("error", "unreadable", "file not found"))
        return report
    if kind == "unknown":
        report = SourceReport(path=str(p), kind=kind)
        allowed = ", ".join(sorted(IMAGE_SUFFIXES + VIDEO_SUFFIXES))
        report.problems.append(
            Problem("error", "unreadable", f"unsupported file type; expected one of {allowed}")
        )
        return report
    if kind == "image":
        from pipelines.errors import InputError
        from pipelines.media.video_in import read_image

        try:
            image = read_image(p)
        except InputError:
            report = SourceReport(path=str(p), kind=kind)
            report.problems.append(Problem("error", "unreadable", "not a readable image"))
            return report
        return inspect_frames([image], str(p), "image")
    import av

    try:
        frames = list(sample_video_frames(p))
    except (av.FFmpegError, IndexError, UnicodeDecodeError) as exc:  # IndexError: no video stream
        report = SourceReport(path=str(p), kind=kind)
        report.problems.append(
            Problem("error", "unreadable", f"not a readable video ({exc.__class__.__name__})")
        )
        return report
    if not frames:
        report = SourceReport(path=str(p), kind=kind)
        report.problems.append(Problem("error", "unreadable", "video has no frames"))
        return report
    return inspect_frames(frames, str(p), "video")
