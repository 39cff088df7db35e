"""The fonts talkreel can rely on on a fresh machine.

The default is DejaVu Sans as shipped inside matplotlib's wheel (mpl-data/fonts/ttf, with LICENSE_DEJAVU beside
it: the Bitstream Vera / DejaVu licence, free to use and redistribute). matplotlib is a declared dependency for
exactly this reason (mediapipe pulls it in too). DejaVu Sans covers Latin with accents, Greek, Cyrillic, Hebrew
and Arabic, which is what the captions and cards need.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from PIL import ImageFont, features

from pipelines.errors import InputError

_REGULAR = "DejaVuSans.ttf"
_BOLD = "DejaVuSans-Bold.ttf"


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
