"""QC figures from per-frame tracks: mouth opening (NaN where no face), face sharpness, and audio level of every frame.

The video tracks may be measured on a subsample of the frames (see pipelines.qc.sampling): `sample` marks an even
subsample, which the statistics use; frames measured besides it (every frame of the pauses) count only for the
closed-mouth figure, which looks only there (in the statistics they would weigh the pauses too much). The audio
level is known for every frame. A subsample changes a figure's precision, not its meaning. What each figure means
and its range: docs/qc.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.speech.levels import silent_frames

CLOSED_MARGIN = 0.04  # opening units (inner-lip gap / pupil distance)
MIN_PAUSE_S = 0.3
MIN_PAUSE_FRAMES = (
    5  # fewer pause frames than this give no closed-mouth share: a share of 1 or 2 frames is noise
)
CLOSING_S = 0.12
MAX_OFFSET_S = 0.4  # the cross-correlation looks for the audio/video offset within +-this
# Below this peak correlation the mouth does not follow the envelope closely enough for its peak to say anything
# (real speech often stays under it: the envelope is a loose proxy of articulation); the offset is then None.
OFFSET_MIN_CORRELATION = 0.2
ENVELOPE_RANGE_DB = 50.0  # the envelope floor: digital silence must not dominate a correlation
# Mouth opening of real conversational speech in these units (inner-lip gap / pupil distance), the ranges the
# review page marks a clip against: a gap of ~0-25 mm while talking against a pupil distance of ~60-65 mm
# (anthropometric averages), i.e. a mean of roughly 0.05-0.30 and a 95th percentile of 0.15-0.55. Broad on
# purpose: they flag a frozen or a puppet-like mouth, not a style of speaking.
SPEECH_RANGES = {
    "mouth_opening_mean": (0.05, 0.30),
    "mouth_opening_p95": (0.15, 0.55),
    "mouth_change_per_s": (0.3, 3.0),
}


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


def envelope(levels_db: np.ndarray) -> np.ndarray:
    """Frame levels with the floor clipped ENVELOPE_RANGE_DB under the loud (95th percentile) level."""
    if not len(levels_db):
        return levels_db
    return np.maximum(levels_db, float(np.percentile(levels_db, 95)) - ENVELOPE_RANGE_DB)


def av_offset(openings: np.ndarray, env: np.ndarray, fps: float) -> tuple[int | None, float | None]:
    """(frames the mouth lags the audio by, the correlation at that lag): the lag within +-MAX_OFFSET_S where
    mouth[t] correlates best with env[t - lag]; the lag is None when the best is at the range's edge or under
    OFFSET_MIN_CORRELATION. Only frames with an opening count; the envelope is dense, so a
    subsampled mouth still resolves the lag to one frame."""
    face = np.flatnonzero(~np.isnan(openings))
    max_lag = int(round(MAX_OFFSET_S * fps))
    best: tuple[int | None, float | None] = (None, None)
    for lag in range(-max_lag, max_lag + 1):
        t = face[(face - lag >= 0) & (face - lag < len(env))]
        r = _correlation(openings[t], env[t - lag])
        if r is not None and (best[1] is None or r > best[1]):
            best = (lag, r)
    if best[0] is not None and (abs(best[0]) == max_lag or best[1] < OFFSET_MIN_CORRELATION):
        return None, best[1]  # no peak inside the range, or too weak a link to place one
    return best


def mouth_change_per_s(openings: np.ndarray, fps: float) -> float | None:
    """Mean |opening change| between consecutive frames that both have an opening, per second."""
    steps = np.abs(np.diff(openings)) * fps
    steps = steps[~np.isnan(steps)]
    return float(steps.mean()) if len(steps) else None


def sharpness_figures(sharpness: np.ndarray) -> dict[str, float | None]:
    """Median face sharpness and the ratio of the last quarter's median to the first quarter's (a smear that
    grows over a long clip shows as a ratio well under 1)."""
    idx = np.flatnonzero(~np.isnan(sharpness))
    if not len(idx):
        return {"face_sharpness_median": None, "face_sharpness_end_ratio": None}
    values = sharpness[idx]
    out: dict[str, float | None] = {"face_sharpness_median": round(float(np.median(values)), 2)}
    quarter = len(sharpness) / 4
    first, last = values[idx < quarter], values[idx >= 3 * quarter]
    ok = len(first) >= 3 and len(last) >= 3 and np.median(first) > 0
    out["face_sharpness_end_ratio"] = round(float(np.median(last) / np.median(first)), 3) if ok else None
    return out


def _in_clip(n: int, clip: tuple[int, int] | None) -> np.ndarray:
    """Which of n output frames show the clip (`clip`: its first frame and frame count; None: all)."""
    if clip is None:
        return np.ones(n, bool)
    mask = np.zeros(n, bool)
    mask[clip[0] : clip[0] + clip[1]] = True
    return mask


def qc_figures(
    openings: np.ndarray,
    levels_db: np.ndarray,
    fps: float = 25.0,
    measured: np.ndarray | None = None,
    sharpness: np.ndarray | None = None,
    sample: np.ndarray | None = None,
    clip: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The figures from per-frame mouth openings (NaN = no face or not measured), audio levels of every frame,
    `measured` (which frames the video was measured on; all when None), `sample` (the even subsample among them
    the statistics use; all measured frames when None) and face sharpness (NaN where none)."""
    n = min(len(openings), len(levels_db))
    openings, levels_db = np.asarray(openings[:n], np.float64), np.asarray(levels_db[:n], np.float64)
    measured = np.ones(n, bool) if measured is None else np.asarray(measured[:n], bool)
    sample = measured if sample is None else np.asarray(sample[:n], bool) & measured
    any_face = ~np.isnan(openings) & measured
    face = any_face & sample
    silent = silent_frames(levels_db)
    checked = pause_frames(silent, fps) & any_face
    out: dict[str, Any] = {
        "frames": int(n),
        "frames_measured": int(measured.sum()),
        # Only frames that show the clip can lack a face: title and question cards have none by design.
        "frames_without_face": int((measured & np.isnan(openings) & _in_clip(n, clip)).sum()),
        "silent_frames": int(silent.sum()),
        "pause_frames_checked": int(checked.sum()),
        "mouth_audio_correlation": None,
        "silent_closed_share": None,
        "mouth_opening_mean": None,
        "mouth_opening_p95": None,
        "mouth_change_per_s": None,
        "av_offset_ms": None,
        "av_offset_correlation": None,
    }
    sharp = np.full(n, np.nan) if sharpness is None else np.asarray(sharpness[:n], float)
    out.update(sharpness_figures(np.where(sample, sharp, np.nan)))
    if face.sum() == 0:
        return out
    o = openings[face]
    env = envelope(levels_db)
    corr = _correlation(o, env[face])
    rest = float(np.percentile(openings[any_face], 5))  # the pause frames (all measured) anchor "closed"
    closed = openings <= rest + CLOSED_MARGIN
    change = mouth_change_per_s(np.where(face, openings, np.nan), fps)
    lag, lag_r = av_offset(np.where(face, openings, np.nan), env, fps)
    out.update(
        mouth_audio_correlation=None if corr is None else round(corr, 4),
        silent_closed_share=round(float(closed[checked].mean()), 4)
        if checked.sum() >= MIN_PAUSE_FRAMES
        else None,
        mouth_opening_mean=round(float(o.mean()), 4),
        mouth_opening_p95=round(float(np.percentile(o, 95)), 4),
        mouth_change_per_s=None if change is None else round(change, 4),
        av_offset_ms=None if lag is None else round(1000.0 * lag / fps, 1),
        av_offset_correlation=None if lag_r is None else round(lag_r, 4),
    )
    return out
