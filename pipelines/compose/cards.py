"""Full-frame cards (intro title, closing, FAQ question), each rendered once to an RGB array."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.compose.fonts import load_font
from pipelines.compose.overlays import Overlay
from pipelines.compose.text import TextStyle, parse_colour, style_for, text_block, wrap
from pipelines.errors import InputError
from pipelines.spec.compose import Theme


@dataclass(frozen=True)
class CardText:
    heading: str
    kicker: str | None = None  # small accent line above the heading (persona name, "Question")
    subheading: str | None = None


def _logo(path: Path, max_w: int, max_h: int) -> np.ndarray:
    from pipelines.media.images import ImageProblem, open_image

    try:
        with open_image(path) as img:
            logo = img.convert("RGBA")
    except ImageProblem as exc:
        raise InputError(path, "logo", str(exc)) from None
    logo.thumbnail((max_w, max_h), Image.Resampling.LANCZOS)
    return np.asarray(logo)


def _wrapped(text: str, style: TextStyle, width: int, max_lines: int) -> np.ndarray:
    style = style_for(text, style)  # a CJK fallback font where the theme's lacks the glyphs
    return text_block(wrap(text, style.font, width, max_lines=max_lines), style)


def render_card(size: tuple[int, int], text: CardText, theme: Theme, backdrop: np.ndarray) -> np.ndarray:
    """The card as an RGB uint8 (h, w, 3) array: logo on top, kicker, heading, subheading, centred."""
    width, height = size
    unit = min(width, height)
    text_width = int(width * 0.84)
    colours = theme.colours
    heading_style = TextStyle(
        load_font(theme.font_bold, int(unit * 0.085), bold=True), parse_colour(colours.text)
    )
    small_style = TextStyle(load_font(theme.font, int(unit * 0.045)), parse_colour(colours.accent))
    sub_style = TextStyle(load_font(theme.font, int(unit * 0.05)), parse_colour(colours.text))

    blocks: list[np.ndarray] = []
    if theme.logo is not None:
        blocks.append(_logo(theme.logo, int(width * 0.3), int(height * 0.14)))
    if text.kicker:
        blocks.append(_wrapped(text.kicker, small_style, text_width, max_lines=2))
    blocks.append(_wrapped(text.heading, heading_style, text_width, max_lines=5))
    if text.subheading:
        blocks.append(_wrapped(text.subheading, sub_style, text_width, max_lines=3))

    gap = int(unit * 0.035)
    total_h = sum(b.shape[0] for b in blocks) + gap * (len(blocks) - 1)
    frame = backdrop.copy()
    y = max(0, (height - total_h) // 2)
    for block in blocks:
        Overlay(block, (width - block.shape[1]) // 2, y).blend_onto(frame)
        y += block.shape[0] + gap
    return frame
