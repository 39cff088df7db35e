"""Where the clip goes in the output frame: full frame (cover-cropped) or picture-in-picture over a background."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.compose.text import parse_colour
from pipelines.errors import InputError
from pipelines.spec.compose import Layout

ASPECTS = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1)}


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def output_size(layout: Layout, clip_size: tuple[int, int], size: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height): the job's explicit size, else the aspect at the clip's short side, else the clip's size."""
    if size is not None:
        return int(size[0]), int(size[1])
    clip_w, clip_h = clip_size
    if layout.aspect is None:
        return _even(clip_w), _even(clip_h)
    aw, ah = ASPECTS[layout.aspect]
    short = min(clip_w, clip_h)
    # The short side keeps the clip's resolution so a square 512 clip becomes 910x512, not an upscale to 1080p.
    if aw >= ah:
        return _even(short * aw / ah), _even(short)
    return _even(short), _even(short * ah / aw)


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    width, height = size
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width < image.shape[1] and height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale to fill `size` and centre-crop the overflow."""
    width, height = size
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    sw, sh = max(width, int(round(w * scale))), max(height, int(round(h * scale)))
    scaled = resize_rgb(image, (sw, sh))
    x, y = (sw - width) // 2, (sh - height) // 2
    return np.ascontiguousarray(scaled[y : y + height, x : x + width])


def background(
    size: tuple[int, int], spec: str | Path | None, default_colour: str, image: Path | None
) -> np.ndarray:
    """The backdrop of cards and PiP: a colour ('#rrggbb'), an image file (cover-fitted), or the theme's."""
    width, height = size
    if spec is not None and str(spec).startswith("#"):
        try:
            colour = parse_colour(str(spec))
        except ValueError:
            raise InputError(
                None, "layout.background", f"expected #rrggbb or an image file, got {spec!r}"
            ) from None
        return np.full((height, width, 3), colour[:3], np.uint8)
    path = Path(spec) if spec is not None else image
    if path is None:
        return np.full((height, width, 3), parse_colour(default_colour)[:3], np.uint8)
    from pipelines.media.images import ImageProblem, open_image

    try:
        with open_image(path) as img:
            pixels = np.asarray(img.convert("RGB"))
    except ImageProblem as exc:
        raise InputError(path, "background", str(exc)) from None
    return cover(pixels, size)


@dataclass(frozen=True)
class Placement:
    """How one clip frame becomes one output frame (before overlays)."""

    mode: str
    size: tuple[int, int]
    backdrop: np.ndarray | None  # PiP only
    box: tuple[int, int, int, int]  # x, y, w, h of the clip inside the output

    def output_point(self, point: tuple[float, float], clip_size: tuple[int, int]) -> tuple[float, float]:
        """Where a point of the clip frame (fractions of its width and height) is in the output (fractions)."""
        width, height = self.size
        if self.mode == "full":  # as cover(): scaled to fill, the overflow cropped evenly
            w, h = clip_size
            scale = max(width / w, height / h)
            sw, sh = max(width, int(round(w * scale))), max(height, int(round(h * scale)))
            x = point[0] * sw - (sw - width) // 2
            y = point[1] * sh - (sh - height) // 2
        else:
            bx, by, bw, bh = self.box
            x, y = bx + point[0] * bw, by + point[1] * bh
        return x / width, y / height

    def place(self, clip_frame: np.ndarray) -> np.ndarray:
        if self.mode == "full":
            return cover(clip_frame, self.size)
        x, y, w, h = self.box
        out = self.backdrop.copy()
        out[y : y + h, x : x + w] = resize_rgb(clip_frame, (w, h))
        return out


def plan_placement(
    layout: Layout, size: tuple[int, int], clip_size: tuple[int, int], backdrop: np.ndarray
) -> Placement:
    width, height = size
    if layout.mode == "full":
        return Placement("full", size, None, (0, 0, width, height))
    clip_w, clip_h = clip_size
    h = _even(min(height * layout.scale, height))
    w = _even(h * clip_w / clip_h)
    if w > width:
        w = _even(width * 0.95)
        h = _even(w * clip_h / clip_w)
    margin = _even(min(width, height) * 0.05)
    xs = {
        "left": margin,
        "bottom-left": margin,
        "right": width - w - margin,
        "bottom-right": width - w - margin,
    }
    x = xs.get(layout.position, (width - w) // 2)
    y = height - h - margin if layout.position.startswith("bottom") else (height - h) // 2
    return Placement("pip", size, backdrop, (max(0, x), max(0, y), w, h))
