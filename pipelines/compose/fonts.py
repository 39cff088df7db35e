"""The fonts talkreel can rely on on a fresh machine.

The default is DejaVu Sans as shipped inside matplotlib's wheel (mpl-data/fonts/ttf, with LICENSE_DEJAVU beside
it: the Bitstream Vera / DejaVu licence, free to use and redistribute). matplotlib is a declared dependency for
exactly this reason (mediapipe pulls it in too). DejaVu Sans covers Latin with accents, Greek, Cyrillic, Hebrew
and Arabic, which is what the captions and cards need.

It has no Chinese, Japanese or Korean glyphs. For those, text falls back to the CJK font found on the machine
(`FALLBACK_FONTS`) that covers it best: WenQuanYi Micro Hei from the Debian package `fonts-wqy-microhei`
(Apache-2.0 or GPL-3+ with the font exception; 5 MB; Chinese, Japanese kana and Korean hangul; CI installs
it), else Noto Sans CJK or Droid Sans Fallback (which lacks hangul) where installed. A text whose characters no font
covers is reported (`missing_glyphs`: validate warns, the record lists them) instead of rendering as boxes.
"""

from __future__ import annotations

import functools
import importlib.util
import unicodedata
from pathlib import Path

from PIL import ImageFont, features

from pipelines.errors import InputError

_REGULAR = "DejaVuSans.ttf"
_BOLD = "DejaVuSans-Bold.ttf"
# CJK-capable fonts of common Linux packages, in order of preference (see the module doc).
FALLBACK_FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),  # fonts-wqy-microhei
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),  # fonts-noto-cjk
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),  # fonts-droid-fallback
)


def _mpl_font_dir() -> Path:
    # Located without importing matplotlib (its import costs ~0.5 s and starts a font cache).
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(None, "font", "matplotlib (which ships the default DejaVu fonts) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"


def default_font_path(bold: bool = False) -> Path:
    path = _mpl_font_dir() / (_BOLD if bold else _REGULAR)
    if not path.is_file():
        raise InputError(None, "font", f"the bundled font {path} is missing; reinstall matplotlib")
    return path


def default_font_licence() -> Path:
    return _mpl_font_dir() / "LICENSE_DEJAVU"


def layout_engine_name() -> str:
    """'raqm' (bidi + shaping: Arabic/Hebrew render correctly) or 'basic' (no shaping, left-to-right only)."""
    return "raqm" if features.check("raqm") else "basic"


@functools.lru_cache(maxsize=64)
def load_font(path: Path | None, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """A FreeType font at `size` px; `path` None means the bundled DejaVu Sans (bold or regular)."""
    font_path = path if path is not None else default_font_path(bold)
    engine = ImageFont.Layout.RAQM if layout_engine_name() == "raqm" else ImageFont.Layout.BASIC
    try:
        return ImageFont.truetype(str(font_path), size=max(1, int(size)), layout_engine=engine)
    except OSError as exc:
        raise InputError(font_path, "font", f"not a readable TrueType/OpenType font ({exc})") from None


@functools.lru_cache(maxsize=16)
def _code_points(path: Path) -> frozenset[int]:
    """The characters a font file has glyphs for (its best cmap; the first face of a collection)."""
    from fontTools.ttLib import TTFont

    with TTFont(str(path), fontNumber=0, lazy=True) as font:
        return frozenset(font.getBestCmap() or {})


def _needs_glyph(char: str) -> bool:
    # Spaces, controls and format characters (joiners, direction marks) are not drawn as glyphs.
    return not (char.isspace() or unicodedata.category(char) in ("Cc", "Cf"))


def _missing(text: str, path: Path) -> str:
    have = _code_points(path)
    return "".join(dict.fromkeys(c for c in text if _needs_glyph(c) and ord(c) not in have))


def fallback_fonts() -> list[Path]:
    return [p for p in FALLBACK_FONTS if p.is_file()]


def font_path_for(text: str, path: Path | None, bold: bool = False) -> tuple[Path, str]:
    """(the font file to draw `text` with, the characters it still lacks): the given (or default) font when it
    covers the text, else the fallback font that leaves the fewest characters out."""
    primary = path if path is not None else default_font_path(bold)
    lacking = _missing(text, primary)
    best = (primary, lacking)
    for fallback in fallback_fonts() if lacking else []:
        still = _missing(text, fallback)
        if len(still) < len(best[1]):
            best = (fallback, still)
    return best


def missing_glyphs(text: str, path: Path | None = None, bold: bool = False) -> str:
    """The characters of `text` that neither the font nor any installed fallback can draw ('' when none)."""
    return font_path_for(text, path, bold)[1]


def font_for(text: str, font: ImageFont.FreeTypeFont) -> ImageFont.FreeTypeFont:
    """`font`, or the fallback font at the same size when `font` lacks characters of `text` that it has."""
    chosen, _ = font_path_for(text, Path(font.path))
    return font if chosen == Path(font.path) else load_font(chosen, int(font.size))
