"""Pre-rendered RGBA overlays (lower thirds, banners, captions, label) and their blending onto frames.

Each overlay is rendered once per distinct text and blended onto the frame's region only, so the per-frame
cost is proportional to the overlay's area, not the frame's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pipelines.compose.text import RGBA, TextStyle, style_for, text_block, wrap


@dataclass(frozen=True)
class Overlay:
    rgba: np.ndarray  # (h, w, 4) uint8, straight (not premultiplied) alpha
    x: int
    y: int

    def blend_onto(self, frame: np.ndarray, opacity: float = 1.0) -> None:
        """Alpha-blend in place onto an RGB uint8 frame; parts outside the frame are clipped."""
        h, w = self.rgba.shape[:2]
        fh, fw = frame.shape[:2]
        x0, y0 = max(self.x, 0), max(self.y, 0)
        x1, y1 = min(self.x + w, fw), min(self.y + h, fh)
        if x0 >= x1 or y0 >= y1:
            return
        crop = (slice(y0 - self.y, y1 - self.y), slice(x0 - self.x, x1 - self.x))
        if opacity == 1.0:
            self._blend_opaque(frame[y0:y1, x0:x1], crop)
            return
        src = self.rgba[crop]
        alpha = src[..., 3:4].astype(np.float32) * (opacity / 255.0)
        region = frame[y0:y1, x0:x1].astype(np.float32)
        region += (src[..., :3].astype(np.float32) - region) * alpha
        frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)

    def _blend_opaque(self, region: np.ndarray, crop: tuple[slice, slice]) -> None:
        """The float blend above at full opacity, as exact integers: round((r (255 - a) + s a) / 255).

        r + (s - r) a / 255 is never halfway between two levels (2 (s - r) a is even, an odd multiple of 255
        is not), so rounding it exactly gives the float path's result for every (r, s, a) (checked over all of
        them in a test) with three OpenCV passes instead of eight numpy ones, the overlay's part precomputed."""
        import cv2

        inverse, weighted = self._opaque_terms
        total = cv2.add(cv2.multiply(region, inverse[crop], dtype=cv2.CV_16U), weighted[crop])
        out = cv2.convertScaleAbs(total, dst=region, alpha=1 / 255.0)
        if out is not region:  # OpenCV wrote a copy (a frame with unusual strides)
            region[...] = out

    @cached_property
    def _opaque_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """(255 - a) per channel (uint8) and s * a (uint16): the overlay's constant parts of the blend."""
        alpha = self.rgba[..., 3:4]
        inverse = np.ascontiguousarray(np.broadcast_to(255 - alpha, (*alpha.shape[:2], 3)))
        weighted = self.rgba[..., :3].astype(np.uint16) * alpha
        return inverse, weighted


def panel(text_rgba: np.ndarray, fill: RGBA, pad_x: int, pad_y: int, min_width: int = 0) -> np.ndarray:
    """Text on a filled rectangle (the panel's alpha composited under the text's)."""
    th, tw = text_rgba.shape[:2]
    width = max(tw + 2 * pad_x, min_width)
    out = np.zeros((th + 2 * pad_y, width, 4), np.float32)
    out[..., :3] = fill[:3]
    out[..., 3] = fill[3] / 255.0
    ox = (width - tw) // 2
    src = text_rgba.astype(np.float32)
    a_t = src[..., 3:4] / 255.0
    dst = out[pad_y : pad_y + th, ox : ox + tw]
    a_d = dst[..., 3:4]
    a_o = a_t + a_d * (1 - a_t)
    rgb = (src[..., :3] * a_t + dst[..., :3] * a_d * (1 - a_t)) / np.maximum(a_o, 1e-6)
    dst[..., :3] = rgb
    dst[..., 3:4] = a_o
    out[..., 3] *= 255.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def text_panel(
    text: str,
    style: TextStyle,
    fill: RGBA,
    max_text_width: int,
    max_lines: int | None = None,
    pad: float = 0.45,
    accent: RGBA | None = None,
) -> np.ndarray:
    """A wrapped text block on a panel; `accent` draws a bar along the panel's start edge."""
    style = style_for(text, style)
    size = style.font.size
    lines = wrap(text, style.font, max_text_width, max_lines=max_lines)
    block = text_block(lines, style)
    pad_x, pad_y = int(size * pad * 1.6), int(size * pad)
    out = panel(block, fill, pad_x, pad_y)
    if accent is not None:
        bar = max(3, size // 6)
        out[:, :bar] = accent
    return out
