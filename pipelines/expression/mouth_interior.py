"""The inside of an opened mouth, painted for a face whose picture never showed it (a still portrait).

`palette_of` reads the persona's own colours once: its lips, the skin around the mouth and, when the portrait
shows them, its teeth. Every interior colour is derived from those by scaling, never from a fixed hue, so a
greyscale source (a black-and-white photo, a sketch, a statue) gets a greyscale interior, a warm-lit photo a
warm one.

`mouth_fill` paints between the two lines the mouth warp leaves (the resting lower inner lip carried by the
upper side's field, and by the lower side's): a cavity shaded darker towards the corners, a band of upper teeth
under the upper lip (receding into shadow at the corners), and the top of the tongue rising from the lower lip.
The painted area's soft edge lies inside the opening, so the lips around it are never covered.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.face import mesh

_CHEEK_SKIN = (205, 425, 207, 427, 36, 266, 200, 199)  # cheeks beside the mouth and the chin below it


@dataclass(frozen=True)
class MouthPalette:
    """RGB float32 colours of one face: lips, skin and teeth (sampled or derived)."""

    lips: np.ndarray
    skin: np.ndarray
    teeth: np.ndarray

    @property
    def cavity(self) -> np.ndarray:
        return self.lips * 0.3

    @property
    def tongue(self) -> np.ndarray:
        return self.lips * 0.8


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114], np.float32))


def palette_of(image: np.ndarray, points: np.ndarray, unit: float, teeth_visible: bool) -> MouthPalette:
    """The face's colours from its image and landmarks (478, 2): median lip colour between the outer and inner
    lip contours, median skin beside the mouth, and the teeth's colour when the mouth shows them at rest (the
    brightest third of the opening), else a near-neutral white a little brighter than the skin, tinted by it."""
    rgb = image[..., :3]
    pts = np.asarray(points, np.float64)[:, :2]
    outer, inner = pts[list(mesh.LIPS_OUTER)], pts[list(mesh.LIPS_INNER)]
    x0, y0 = np.maximum(np.floor(outer.min(0)).astype(int) - 2, 0)
    x1, y1 = np.ceil(outer.max(0)).astype(int) + 3
    x1, y1 = min(x1, rgb.shape[1]), min(y1, rgb.shape[0])
    box = rgb[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32)
    ring = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(ring, [np.round(outer - [x0, y0]).astype(np.int32)], 1)
    opening = np.zeros_like(ring)
    cv2.fillPoly(opening, [np.round(inner - [x0, y0]).astype(np.int32)], 1)
    lip_px = box[(ring & (1 - opening)).ravel() > 0]
    r = max(1, int(0.03 * unit))
    skin_px = np.concatenate(
        [
            rgb[max(int(y) - r, 0) : int(y) + r + 1, max(int(x) - r, 0) : int(x) + r + 1].reshape(-1, 3)
            for x, y in pts[list(_CHEEK_SKIN)]
        ]
    ).astype(np.float32)
    skin = np.median(skin_px, 0) if len(skin_px) else np.full(3, 160.0, np.float32)
    lips = np.median(lip_px, 0) if len(lip_px) >= 8 else skin * np.float32(0.85)
    teeth = None
    inside = box[opening.ravel() > 0]
    if teeth_visible and len(inside) >= 12:
        luma = inside @ np.array([0.299, 0.587, 0.114], np.float32)
        bright = inside[luma >= np.quantile(luma, 2 / 3)]
        if _luma(np.median(bright, 0)) > _luma(lips):
            teeth = np.median(bright, 0)
    if teeth is None:
        level = min(235.0, 1.12 * _luma(skin) + 22.0)
        tint = skin / max(_luma(skin), 1.0)
        teeth = level * (0.8 + 0.2 * tint)
    return MouthPalette(
        lips.astype(np.float32), skin.astype(np.float32), np.clip(teeth, 0, 255).astype(np.float32)
    )


def _rounded(poly: np.ndarray, points: int = 96, reach: float = 0.035) -> np.ndarray:
    """The closed polygon resampled evenly along its outline and smoothed around it (a circular Gaussian of
    `reach` times the perimeter): its corners become curves following the lip contour. The inner-lip
    landmarks are few and crowd at the mouth corners, so the opening's outline was straight segments meeting
    at sharp angles (a pentagon on wide openings). Smoothing pulls convex corners inwards, so the painted
    interior stays inside the opening there and the lips round off its corners."""
    closed = np.concatenate([poly, poly[:1]])
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    if along[-1] <= 1e-6:
        return poly
    at = np.arange(points) * along[-1] / points
    even = np.stack([np.interp(at, along, closed[:, i]) for i in range(2)], axis=1)
    sigma = reach * points
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    wrapped = np.concatenate([even[-radius:], even, even[:radius]])
    return np.stack([np.convolve(wrapped[:, i], kernel, mode="valid") for i in range(2)], axis=1)


def mouth_fill(
    image: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    unit: float,
    opening: float,
    teeth: bool,
    palette: MouthPalette,
) -> tuple[int, int, int, int] | None:
    """Paint the part of the mouth that the opening uncovers, in place; returns the box (y0, y1, x0, x1) it
    painted.

    `top`: where the resting mouth's lower edge went (the lower inner lip carried by the upper side's field),
    `bottom`: the displaced lower inner lip, both from the image-left inner corner to the right one. Whatever
    the resting mouth showed (closed lips, or teeth in a smiling portrait) stays above `top`. `teeth`: paint
    upper teeth under `top` (for a portrait whose mouth is closed at rest)."""
    if opening <= 0.02:
        return None
    top = np.asarray(top, np.float64)
    bottom = np.asarray(bottom, np.float64)
    pts = np.concatenate([top, bottom])
    x0, y0 = np.floor(pts.min(0)).astype(int) - 3
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 4
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    h, w = y1 - y0, x1 - x0
    poly = _rounded(np.concatenate([top, bottom[::-1]])) - [x0, y0]
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(poly * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
    # the soft edge lies inside the opening: shrink by half the blur first, so no lip pixel is painted over
    soft = max(3, int(0.025 * unit) | 1)
    inner = cv2.erode(mask, np.ones((soft // 2 + 1, soft // 2 + 1), np.uint8))
    mask = np.minimum(cv2.GaussianBlur(inner, (soft, soft), 0), mask)

    xs = np.arange(w, dtype=np.float64) + x0
    order = np.argsort(top[:, 0])
    top_y = np.interp(xs, top[order, 0], top[order, 1]) - y0
    order = np.argsort(bottom[:, 0])
    bottom_y = np.interp(xs, bottom[order, 0], bottom[order, 1]) - y0
    gap = np.maximum(bottom_y - top_y, 1.0).astype(np.float32)[None, :]
    depth = np.arange(h, dtype=np.float32)[:, None] - top_y.astype(np.float32)[None, :]  # px under `top`
    frac = np.clip(depth / gap, 0.0, 1.0)  # 0 at the upper edge of the opening, 1 at the lower lip
    span = max(1.0, top[:, 0].max() - top[:, 0].min())
    cx = np.clip((xs - top[:, 0].min()) / span * 2 - 1, -1, 1).astype(np.float32)[None, :]
    centre = 1.0 - cx * cx  # 1 in the middle of the mouth, 0 at the corners

    # cavity: darkest at the corners and right under the teeth, a little light reaching the middle
    light = (0.45 + 0.55 * centre) * (0.75 + 0.25 * frac)
    colour = [palette.cavity[c] * light for c in range(3)]
    # tongue: a rounded top rising from the lower lip, taller as the mouth opens, lit on its top
    rise = (0.25 + 0.25 * min(opening, 1.0)) * np.sqrt(np.clip(centre * 1.15 - 0.15, 0.0, 1.0))
    tongue = np.clip((frac - (1.0 - rise)) / 0.25, 0.0, 1.0) * (rise > 0.02)
    tongue_light = 0.7 + 0.3 * np.clip(1.0 - (frac - (1.0 - rise)) / np.maximum(rise, 1e-3), 0.0, 1.0)
    for c in range(3):
        colour[c] += tongue * (palette.tongue[c] * tongue_light * (0.6 + 0.4 * centre) - colour[c])
    if teeth:
        # upper teeth: a band under the upper lip, shorter and darker towards the corners, its lower edge soft
        band = np.minimum(0.075 * unit, 0.45 * gap) * np.sqrt(centre)
        tooth = np.clip((band - depth) / 1.5, 0.0, 1.0) * (depth >= -1.0)
        shade = (0.45 + 0.55 * centre) * (1.0 - 0.2 * np.clip(depth / np.maximum(band, 1.0), 0.0, 1.0))
        gapped = min(1.0, float(gap.max()) / (0.06 * unit))  # a narrow slit shows shadow, not a bright sliver
        tooth *= gapped
        for c in range(3):
            colour[c] += tooth * (palette.teeth[c] * shade - colour[c])
    strength = min(1.0, (opening - 0.02) / 0.08)
    alpha = mask * strength
    region = image[y0:y1, x0:x1, :3]
    planes = [region[..., c] + alpha * (colour[c] - region[..., c]) for c in range(3)]
    blended = cv2.merge([p.astype(np.float32) for p in planes])
    blended += 0.5
    region[...] = np.clip(blended, 0, 255).astype(np.uint8)
    return y0, y1, x0, x1
