"""Text to RGBA images: word wrapping to a width, right-to-left paragraphs, accented text.

Bidi reordering and Arabic shaping come from Pillow's raqm layout (libraqm + FriBiDi + HarfBuzz, bundled in
Pillow's wheels). Without raqm Pillow draws code points left to right unshaped; `fonts.layout_engine_name()`
says which one is in use and the job record carries it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGBA = tuple[int, int, int, int]


def parse_colour(value: str) -> RGBA:
    """'#rrggbb' or '#rrggbbaa' -> (r, g, b, a)."""
    hex_digits = value.lstrip("#")
    r, g, b = (int(hex_digits[i : i + 2], 16) for i in (0, 2, 4))
    a = int(hex_digits[6:8], 16) if len(hex_digits) == 8 else 255
    return r, g, b, a


def base_direction(text: str) -> str:
    """'rtl' when the first strong character is right-to-left (Hebrew, Arabic), else 'ltr' (Unicode rule P2)."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return "rtl"
        if kind == "L":
            return "ltr"
    return "ltr"


def _split_long_word(word: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    pieces, current = [], ""
    for char in word:
        if current and font.getlength(current + char) > width:
            pieces.append(current)
            current = char
        else:
            current += char
    return [*pieces, current] if current else pieces


def wrap(text: str, font: ImageFont.FreeTypeFont, width: float, max_lines: int | None = None) -> list[str]:
    """Greedy word wrap in logical order (bidi reordering happens per line when drawn).

    Explicit newlines are kept; a word wider than `width` is split by characters. With `max_lines`, the
    last kept line ends in an ellipsis.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}" if current else word
            if font.getlength(candidate) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            if font.getlength(word) <= width:
                current = word
            else:
                *full, current = _split_long_word(word, font, width)
                lines.extend(full)
        lines.append(current)
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "…"
    return lines


@dataclass(frozen=True)
class TextStyle:
    font: ImageFont.FreeTypeFont
    fill: RGBA
    align: str = "center"  # "center" | "start" (start = left for LTR lines, right for RTL lines)
    line_spacing: float = 1.25


def style_for(text: str, style: TextStyle) -> TextStyle:
    """`style` with a font that has glyphs for `text` (a CJK fallback for Chinese, Japanese, Korean)."""
    from pipelines.compose.fonts import font_for

    font = font_for(text, style.font)
    return style if font is style.font else replace(style, font=font)


def text_block(lines: list[str], style: TextStyle, width: int | None = None) -> np.ndarray:
    """The lines drawn on a transparent RGBA array; `width` None means as wide as the widest line."""
    ascent, descent = style.font.getmetrics()
    line_h = int(round((ascent + descent) * style.line_spacing))
    direction = base_direction(" ".join(lines))
    raqm = style.font.layout_engine == ImageFont.Layout.RAQM
    widths = [
        int(np.ceil(style.font.getlength(line, direction=direction if raqm else None))) for line in lines
    ]
    block_w = width if width is not None else max([1, *widths])
    block_h = max(1, line_h * len(lines) - (line_h - ascent - descent))
    image = Image.new("RGBA", (block_w, block_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    # One paragraph direction for every line (Unicode P2 on the whole text), so a wrapped line that happens to
    # start with a Latin word inside Arabic text keeps its punctuation where an RTL reader expects it.
    for i, (line, line_w) in enumerate(zip(lines, widths, strict=True)):
        if style.align == "center":
            x = (block_w - line_w) / 2
        elif direction == "rtl":
            x = block_w - line_w
        else:
            x = 0
        draw.text(
            (x, i * line_h), line, font=style.font, fill=style.fill, direction=direction if raqm else None
        )
    return np.asarray(image)
