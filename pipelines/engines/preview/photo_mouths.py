"""A photo persona's `mouths:` clip: a short video of the same person talking, whose mouths the photo speaks with.

The clip is tracked like a video persona (pipelines.face.track, at the job's frame rate, so runs of its frames
play at their real speed) and gives a `MouthLibrary`. Before the render, each entry's lower face is brought to
the photo's terms once:
- scale: resized to the photo's face size (pupil distance), with area averaging when it shrinks, so the paste's
  per-frame similarity transform is close to a pure shift and never resamples a 1080p mouth down by 5x;
- colour: one Lab mean / standard-deviation transfer (Reinhard et al. 2001) from the clip's closed mouths to the
  photo's mouth region, the same for every entry, so nothing flickers; a greyscale photo has no colour spread,
  so its mouths come out greyscale, a warm-lit photo's warm. The paste then matches the remaining lighting
  difference on its border per frame, as for a video persona.
The render pastes them like a video persona's (`mouth_library.LibraryMouths`) into the photo's geometry.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipelines.engines.preview.mouth_library import REGION, MouthLibrary, MouthStore, crop_box
from pipelines.face import mesh
from pipelines.media.video_in import open_source

CLOSED_SHARE = 0.25  # the clip's entries with the most closed mouths (this share) give its colour statistics
# how far the transfer may stretch the clip's spread of lightness (the same person's face: never far)
LIGHTNESS_SPREAD = (0.6, 1.6)


def _unit(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[mesh.RIGHT_PUPIL] - points[mesh.LEFT_PUPIL]))


def _region_mask(shape, points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points[list(REGION)].astype(np.int32)), 1)
    return mask.astype(bool)


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _rgb(lab: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def colour_transfer(
    clip_pixels: np.ndarray, photo_pixels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean_from, gain, mean_to) per Lab channel mapping the clip's pixels (n, 3 RGB) onto the photo's."""
    src, dst = _lab(clip_pixels[None])[0], _lab(photo_pixels[None])[0]
    mu_s, sd_s = src.mean(0), np.maximum(src.std(0), 1e-3)
    mu_d, sd_d = dst.mean(0), dst.std(0)
    gain = sd_d / sd_s
    gain[0] = np.clip(gain[0], *LIGHTNESS_SPREAD)
    gain[1:] = np.clip(gain[1:], 0.0, LIGHTNESS_SPREAD[1])  # 0: a greyscale photo's mouths lose their colour
    return mu_s, gain, mu_d


def clip_mouths(
    clip: Path,
    fps: float,
    points: np.ndarray,
    library: MouthLibrary,
    photo: np.ndarray,
    photo_points: np.ndarray,
) -> tuple[MouthStore, np.ndarray]:
    """The library entries' lower faces at the photo's scale and in its colours, and every clip frame's
    landmarks in the coordinates of its stored crop (zeros for frames that are not entries)."""
    unit = _unit(photo_points)
    entries = set(library.frames.tolist())
    closed = set(library.frames[library.opening <= np.quantile(library.opening, CLOSED_SHARE)].tolist())
    scaled = np.zeros_like(points, dtype=np.float64)
    crops: dict[int, np.ndarray] = {}
    closed_pixels = []
    last = int(library.frames.max())
    for j, frame in enumerate(open_source(clip, fps, None).frames(0, last + 1)):
        if j not in entries:
            continue
        x0, y0, x1, y1 = crop_box(points[j], frame.shape)
        s = unit / max(_unit(points[j]), 1e-6)
        size = (max(round((x1 - x0) * s), 1), max(round((y1 - y0) * s), 1))
        crop = cv2.resize(
            np.ascontiguousarray(frame[y0:y1, x0:x1]),
            size,
            interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC,
        )
        # pixel centres: x + 0.5 in the source maps to (x + 0.5) * s in the resized crop
        scaled[j] = (points[j] - [x0, y0] + 0.5) * [size[0] / (x1 - x0), size[1] / (y1 - y0)] - 0.5
        crops[j] = crop
        if j in closed:
            closed_pixels.append(crop[_region_mask(crop.shape, scaled[j])])
    photo_pixels = photo[..., :3][_region_mask(photo.shape, photo_points)]
    mu_s, gain, mu_d = colour_transfer(np.concatenate(closed_pixels), photo_pixels)
    store = MouthStore()
    for j, crop in crops.items():
        store.add(j, _rgb((_lab(crop) - mu_s) * gain + mu_d), scaled[j])
    return store, scaled
