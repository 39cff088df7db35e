"""QC figures of a rendered talking-head file, measured on the file itself (not on what the engine intended).

- mouth opening per frame: MediaPipe landmarks of the decoded video, the gap between the inner lips at the middle
  of the mouth (mesh points 13/14) divided by the distance between the pupils, so it does not depend on the
  frame size or the face size;
- speech envelope per frame: RMS level (dBFS) of the file's audio over each frame's interval;
- `mouth_audio_correlation`: Pearson correlation of the two over the frames with a face. Speech with a moving
  mouth gives clearly positive values (0.3 .. 0.8); a frozen or random mouth gives ~0;
- `silent_closed_share`: among the silent frames (level more than 35 dB under the loud (95th percentile) level,
  or under -55 dBFS) of pauses at least `MIN_PAUSE_S` long, leaving out the first `CLOSING_S` of each pause (a
  mouth needs that long to close), the share whose mouth is "closed", i.e. within `CLOSED_MARGIN` of the clip's
  most-closed opening (its 5th percentile) — relative to the clip, because a portrait may show its teeth at rest;
- `frames_without_face`, durations of both streams (and their difference), integrated loudness (EBU R128).
Streams the video once; memory does not grow with its length beyond two floats per frame.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InputError
from pipelines.face import mesh

ENVELOPE_RATE = 16000
SILENCE_BELOW_LOUD_DB = 35.0
SILENCE_FLOOR_DBFS = -55.0
CLOSED_MARGIN = 0.04  # opening units (inner-lip gap / pupil distance)
MIN_PAUSE_S = 0.3
CLOSING_S = 0.12


def mouth_opening(points: np.ndarray) -> float:
    """Inner-lip gap at the middle of the mouth over the pupil distance, for one face's (478, 2) landmarks."""
    p = np.asarray(points, np.float64)
    eyes = float(np.linalg.norm(p[mesh.RIGHT_PUPIL] - p[mesh.LEFT_PUPIL]))
    gap = float(np.linalg.norm(p[mesh.LOWER_LIP_INNER] - p[mesh.UPPER_LIP_INNER]))
    return gap / max(eyes, 1e-6)


def video_mouth_openings(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Per-frame mouth opening (NaN where no face) of a video, and its frame rate."""
    import av

    from pipelines.face.landmarks import LandmarkDetector

    values: list[float] = []
    with av.open(os.fspath(path)) as container, LandmarkDetector("video", max_faces=1) as detector:
        if not container.streams.video:
            raise InputError(path, None, "has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else 25.0
        for frame in container.decode(stream):
            faces = detector.detect(frame.to_ndarray(format="rgb24"))
            values.append(mouth_opening(faces[0].points) if faces else math.nan)
    return np.array(values, np.float64), fps


def frame_levels_db(
    blocks: Iterable[np.ndarray], sample_rate: int, fps: float, n_frames: int
) -> tuple[np.ndarray, int]:
    """RMS level (dBFS) of the audio over each video frame's interval [k / fps, (k + 1) / fps), and the number of
    samples seen. Streams over `blocks` (an array works too, as one block): memory does not grow with the audio."""
    edges = np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(np.int64)
    power = np.zeros(n_frames)
    seen = 0
    for block in blocks if not isinstance(blocks, np.ndarray) else [blocks]:
        block = np.asarray(block, np.float64).reshape(-1)
        frame = np.searchsorted(edges, seen + np.arange(len(block)), side="right") - 1
        inside = frame < n_frames
        power += np.bincount(frame[inside], weights=block[inside] ** 2, minlength=n_frames)
        seen += len(block)
    counts = np.maximum(np.minimum(edges[1:], seen) - np.minimum(edges[:-1], seen), 1)
    return 10 * np.log10(power / counts + 1e-12), seen


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def pause_frames(silent: np.ndarray, fps: float) -> np.ndarray:
    """The silent frames that count for the closed-mouth figure: inside pauses of at least MIN_PAUSE_S, after
    their first CLOSING_S."""
    out = np.zeros_like(silent)
    min_len, skip = int(round(MIN_PAUSE_S * fps)), int(round(CLOSING_S * fps))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start >= min_len:
            out[start + skip : end] = True
    return out


def qc_figures(openings: np.ndarray, levels_db: np.ndarray, fps: float = 25.0) -> dict[str, Any]:
    """The lip-sync figures from per-frame mouth openings (NaN = no face) and audio levels of the same frames."""
    n = min(len(openings), len(levels_db))
    openings, levels_db = openings[:n], levels_db[:n]
    face = ~np.isnan(openings)
    loud = float(np.percentile(levels_db, 95)) if n else -120.0
    silent = (levels_db < loud - SILENCE_BELOW_LOUD_DB) | (levels_db < SILENCE_FLOOR_DBFS)
    out: dict[str, Any] = {
        "frames": int(n),
        "frames_without_face": int((~face).sum()),
        "silent_frames": int(silent.sum()),
        "pause_frames_checked": int((pause_frames(silent, fps) & face).sum()),
        "mouth_audio_correlation": None,
        "silent_closed_share": None,
        "mouth_opening_mean": None,
        "mouth_opening_p95": None,
    }
    if face.sum() == 0:
        return out
    o = openings[face]
    # the envelope floor is clipped so that digital silence (-120 dB) does not dominate the correlation
    env = np.maximum(levels_db[face], loud - 50.0)
    corr = _correlation(o, env)
    rest = float(np.percentile(o, 5))
    closed = openings <= rest + CLOSED_MARGIN
    silent_face = pause_frames(silent, fps) & face
    out.update(
        mouth_audio_correlation=None if corr is None else round(corr, 4),
        silent_closed_share=round(float(closed[silent_face].mean()), 4) if silent_face.any() else None,
        mouth_opening_mean=round(float(o.mean()), 4),
        mouth_opening_p95=round(float(np.percentile(o, 95)), 4),
    )
    return out


def qc_file(path: str | os.PathLike) -> dict[str, Any]:
    """Every QC figure of a rendered MP4 (or any video with an audio track), as a JSON-ready dict."""
    from pipelines.media.audio import iter_audio_blocks, measure_loudness
    from pipelines.media.probe import probe

    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "file not found")
    info = probe(path)
    if not info.has_video:
        raise InputError(path, None, "has no video stream")
    openings, fps = video_mouth_openings(path)
    result: dict[str, Any] = {
        "file": str(path),
        "fps": fps,
        "video_duration": round(len(openings) / fps, 4),
        "audio_duration": None,
        "duration_difference": None,
        "loudness_lufs": None,
        "true_peak_dbtp": None,
    }
    if info.has_audio:
        levels, n_samples = frame_levels_db(
            iter_audio_blocks(path, ENVELOPE_RATE), ENVELOPE_RATE, fps, len(openings)
        )
        audio_duration = n_samples / ENVELOPE_RATE
        loudness = measure_loudness(path)
        result.update(
            audio_duration=round(audio_duration, 4),
            duration_difference=round(audio_duration - result["video_duration"], 4),
            loudness_lufs=loudness.integrated if math.isfinite(loudness.integrated) else None,
            true_peak_dbtp=loudness.true_peak if math.isfinite(loudness.true_peak) else None,
        )
    else:
        levels = np.full(len(openings), -120.0)
    result.update(qc_figures(openings, levels, fps))
    return result
