"""The visible disclosure label ("AI-generated" unless configured otherwise) drawn on every output frame.

Precedence: the persona's `disclosure` (its text/position when the persona file sets them) over the theme's
`label`, over the defaults. Only the persona can turn the label off, and only with an explicit `label: false`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.compose.fonts import load_font, missing_glyphs
from pipelines.compose.overlays import Overlay, text_panel
from pipelines.compose.text import TextStyle, parse_colour, style_for
from pipelines.spec.compose import Theme
from pipelines.spec.persona import Disclosure

DEFAULT_TEXT = "AI-generated"
DEFAULT_POSITION = "bottom-right"


@dataclass(frozen=True)
class LabelSpec:
    text: str
    position: str  # top-left | top-right | bottom-left | bottom-right
    note: str | None = None  # why the text is not the configured one


def resolve_label(disclosure: Disclosure | None, theme: Theme) -> LabelSpec | None:
    """What label to draw, or None when the persona explicitly turned it off."""
    disclosure = disclosure or Disclosure()
    if not disclosure.label:
        return None
    explicit = disclosure.model_fields_set
    text = disclosure.text if "text" in explicit else (theme.label.text or DEFAULT_TEXT)
    position = disclosure.position if "position" in explicit else (theme.label.position or DEFAULT_POSITION)
    # The disclosure must always be legible: a text no installed font can draw gives way to the default.
    lacking = missing_glyphs(text, theme.font_bold, bold=True)
    if lacking and text != DEFAULT_TEXT:
        note = f"{text!r} has characters no installed font can draw ({lacking}); shown as {DEFAULT_TEXT!r}"
        return LabelSpec(DEFAULT_TEXT, position, note)
    return LabelSpec(text, position)


def label_overlay(spec: LabelSpec, size: tuple[int, int], theme: Theme) -> Overlay:
    """The label as an overlay in its corner, sized from the frame's short side (legible on phones)."""
    width, height = size
    unit = min(width, height)
    style = TextStyle(
        load_font(theme.font_bold, max(12, int(unit * 0.032)), bold=True),
        parse_colour(theme.colours.label_text),
    )
    # 40 % of the width, widened (up to 90 %) so that no word of the label is split across lines on a small frame.
    style = style_for(spec.text, style)
    longest = max((style.font.getlength(word) for word in spec.text.split()), default=0.0)
    max_w = max(int(width * 0.4), min(int(np.ceil(longest)) + 1, int(width * 0.9)))
    rgba = text_panel(spec.text, style, parse_colour(theme.colours.label_panel), max_w, max_lines=2, pad=0.35)
    margin = max(6, int(unit * 0.025))
    h, w = rgba.shape[:2]
    x = margin if spec.position.endswith("left") else width - w - margin
    y = margin if spec.position.startswith("top") else height - h - margin
    return Overlay(rgba, x, y)
