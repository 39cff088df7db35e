"""What QC measures on one frame, and on a file's audio; `qc_file`, every QC figure of a rendered file.

- mouth opening: MediaPipe landmarks, the gap between the inner lips at the middle of the mouth (mesh points 13/14)
  divided by the distance between the pupils, so it does not depend on the frame size or the face size;
- face sharpness: variance of the Laplacian of the band from the brows to the top of the upper lip (eyes and
  nose), across the face's width, in grey, resized to SHARPNESS_SIDE square first, so it does not depend on the
  face's size in the frame (a smeared face scores low). The mouth and chin are left out: burnt-in captions and
  lower thirds often cover them, and text is as sharp as a picture gets;
- speech level per frame: RMS level (dBFS) of the file's audio over each frame's interval.
The figures made of them: pipelines.qc.figures; which frames are measured: pipelines.qc.sampling.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InputError
from pipelines.face import mesh
from pipelines.face.mesh import mouth_opening  # (at home in face/: the preview calibrates its photos with it)
from pipelines.speech.levels import frame_levels_db

SHARPNESS_SIDE = 128


def face_target(value: Any) -> Any:
    """A FacePick from a record's `qc_face` or a `--face` option ("N": the N-th largest face, "X,Y": the face at
    that point, fractions of the frame); None for None. ValueError with the reason when it is not one."""
    from pipelines.spec.persona import FacePick

    if value is None or isinstance(value, FacePick):
        return value
    if isinstance(value, dict):
        return FacePick.model_validate(value)
    parts = str(value).split(",")
    try:
        if len(parts) == 1:
            return FacePick(index=int(parts[0]))
        if len(parts) == 2:
            return FacePick(x=float(parts[0]), y=float(parts[1]))
    except ValueError:
        pass
    raise ValueError(f"expected N (0 = the largest face) or X,Y (fractions of the frame), got {value!r}")


def face_sharpness(image_rgb: np.ndarray, points: np.ndarray) -> float:
    """Variance of the Laplacian of the brows-to-upper-lip band of the face (grey, resized to SHARPNESS_SIDE
    square)."""
    import cv2

    h, w = image_rgb.shape[:2]
    brows = points[list(mesh.LEFT_BROW + mesh.RIGHT_BROW), 1]
    x0, x1 = int(np.floor(points[:, 0].min())), int(np.ceil(points[:, 0].max()))
    y0, y1 = int(np.floor(brows.min())), int(np.ceil(points[mesh.UPPER_LIP_TOP, 1]))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return math.nan
    grey = cv2.cvtColor(image_rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


class FrameMeter:
    """Mouth opening and face sharpness of frames of one clip, in order (one MediaPipe face-mesh graph in video
    mode, which tracks the faces from the previous call). Not thread-safe; close() it (or use `with`).

    `face`: which person to measure when the frames show several (a FacePick in the output's terms: an index by
    size, or a point as fractions of the frame; see face_target), followed from frame to frame
    (pipelines.face.pick.FaceFollower); None: the one face MediaPipe finds (a single-face mesh is cheaper)."""

    def __init__(self, face: Any = None) -> None:
        from pipelines.face.landmarks import LandmarkDetector
        from pipelines.face.pick import FaceFollower
        from pipelines.face.track import PICK_MAX_FACES

        if face is None:
            self._detector = LandmarkDetector("video", max_faces=1).__enter__()
        else:  # video mode's short-range detector misses the smaller faces of a group: stills, as a pick is made
            self._detector = LandmarkDetector("image", max_faces=PICK_MAX_FACES).__enter__()
        self._follower = FaceFollower(face)

    def face(self, image_rgb: np.ndarray) -> Any:
        """The measured person's FaceLandmarks in one frame, or None. With a pick, the face is meshed on a crop
        around where it was last seen (about a single-face mesh's cost); the whole frame is searched again only
        until it is first found and when the crop loses it."""
        size = (image_rgb.shape[1], image_rgb.shape[0])
        if self._follower.pick is not None and self._follower.last is not None:
            near = self._detector.face_near(image_rgb, self._follower.last.bbox)
            if near is not None and self._follower.choose([near], size) is not None:
                return near
        return self._follower.choose(self._detector.detect(image_rgb), size)

    def measure(self, image_rgb: np.ndarray) -> tuple[float, float]:
        """(opening, sharpness) of one frame; both NaN when no face is found."""
        face = self.face(image_rgb)
        if face is None:
            return math.nan, math.nan
        return mouth_opening(face.points), face_sharpness(image_rgb, face.points)

    def close(self) -> None:
        self._detector.__exit__(None, None, None)

    def __enter__(self) -> FrameMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def audio_figures(path: Path, fps: float, n_frames: int) -> tuple[dict[str, Any], np.ndarray]:
    """Durations and loudness (EBU R128, pipelines.media.loudness) of the file's audio, and the level of each
    video frame (-120 dB without audio): one decode of the audio, at the meter's 48 kHz."""
    from pipelines.media.audio import iter_audio_blocks
    from pipelines.media.loudness import RATE, LoudnessMeter
    from pipelines.media.probe import probe

    out: dict[str, Any] = {
        "audio_duration": None,
        "duration_difference": None,
        "loudness_lufs": None,
        "true_peak_dbtp": None,
    }
    if not probe(path).has_audio:
        return out, np.full(n_frames, -120.0)
    meter = LoudnessMeter()

    def metered():
        for block in iter_audio_blocks(path, RATE):
            meter.feed(block)
            yield block

    levels, n_samples = frame_levels_db(metered(), RATE, fps, n_frames)
    loudness = meter.result()
    out.update(
        audio_duration=round(n_samples / RATE, 4),
        duration_difference=round(n_samples / RATE - n_frames / fps, 4),
        loudness_lufs=round(loudness.integrated, 2) if math.isfinite(loudness.integrated) else None,
        true_peak_dbtp=round(loudness.true_peak, 2) if math.isfinite(loudness.true_peak) else None,
    )
    return out, levels


def qc_file(
    path: str | os.PathLike,
    sampling: Any = None,
    sheet: str | os.PathLike | None = None,
    face: Any = None,
) -> dict[str, Any]:
    """Every QC figure of a rendered MP4 (or any video with an audio track), as a JSON-ready dict; every frame
    measured unless `sampling` (a pipelines.qc.sampling.Sampling) says otherwise. `sheet`: also write a contact
    sheet PNG there; `face`: the person measured (see FrameMeter)."""
    from pipelines.media.probe import probe
    from pipelines.qc.sampling import FULL, QcSampler

    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "file not found")
    info = probe(path)
    if not info.has_video:
        raise InputError(path, None, "has no video stream")
    fps, n_frames = video_rate_and_frames(path)
    with QcSampler(n_frames, fps, sampling or FULL, face=face) as sampler:
        result = sampler.finish(path, sheet=sheet)
    return {"file": str(path), **result}


def video_rate_and_frames(path: Path) -> tuple[float, int]:
    """Frame rate and frame count (from the container, else its duration) of the first video stream."""
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 25.0
        total = stream.frames or int(round(float(container.duration or 0) / 1e6 * fps))
    return fps, max(total, 1)
