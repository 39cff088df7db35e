import numpy as np
import pytest

from pipelines.compose.fonts import default_font_licence, default_font_path, layout_engine_name, load_font
from pipelines.compose.text import TextStyle, base_direction, text_block, wrap

WHITE = (255, 255, 255, 255)


def _ink(rgba: np.ndarray) -> np.ndarray:
    return rgba[..., 3] > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_bundled_font_and_its_licence_are_there():
    assert default_font_path().name == "DejaVuSans.ttf"
    assert default_font_path(bold=True).is_file()
    assert "Bitstream" in default_font_licence().read_text(encoding="utf-8")


def test_wrap_keeps_every_line_within_the_width_and_every_word():
    font = load_font(None, 24)
    text = "Benvenuti nella nostra squadra: qui spieghiamo perché la qualità è più importante della velocità."
    lines = wrap(text, font, 220)
    assert len(lines) > 2
    assert all(font.getlength(line) <= 220 for line in lines)
    assert " ".join(lines).split() == text.split()


def test_wrap_splits_a_word_longer_than_the_width_and_ellipsises_past_max_lines():
    font = load_font(None, 24)
    lines = wrap("Donaudampfschifffahrtsgesellschaftskapitän", font, 150)
    assert len(lines) > 1 and "".join(lines) == "Donaudampfschifffahrtsgesellschaftskapitän"
    capped = wrap("one two three four five six seven eight nine ten", font, 80, max_lines=2)
    assert len(capped) == 2 and capped[-1].endswith("…")


@pytest.mark.parametrize("accented, plain", [("é", "e"), ("ß", "B"), ("ü", "u"), ("à", "a"), ("ç", "c")])
def test_accented_letters_have_their_own_glyphs(accented, plain):
    font = load_font(None, 48)
    style = TextStyle(font, WHITE)
    a, b = text_block([accented], style), text_block([plain], style)
    notdef = text_block(["\uffff"], style)  # a code point DejaVu has no glyph for
    assert _ink(a).sum() > 0
    assert a.shape != b.shape or not np.array_equal(a, b)
    assert a.shape != notdef.shape or not np.array_equal(a, notdef)


def test_base_direction():
    assert base_direction("שלום world") == "rtl"
    assert base_direction("123 مرحبا") == "rtl"
    assert base_direction("Ciao, שלום") == "ltr"


@pytest.mark.skipif(
    layout_engine_name() != "raqm", reason="right-to-left ordering needs Pillow's raqm layout"
)
def test_hebrew_is_drawn_right_to_left():
    # Hebrew letters do not change shape, so the visual order can be checked against Pillow's basic layout,
    # which draws code points left to right with no bidi: logical "אבג" must look like basic "גבא".
    from PIL import Image, ImageDraw, ImageFont

    style = TextStyle(load_font(None, 48), WHITE, align="start")
    shown = _ink(text_block(["אבג"], style))
    basic = ImageFont.truetype(str(default_font_path()), 48, layout_engine=ImageFont.Layout.BASIC)

    def basic_ink(text: str) -> np.ndarray:
        image = Image.new("RGBA", (shown.shape[1], shown.shape[0]), (0, 0, 0, 0))
        ImageDraw.Draw(image).text((0, 0), text, font=basic, fill=WHITE)
        return _ink(np.asarray(image))

    assert _iou(shown, basic_ink("גבא")) > 0.9
    assert _iou(shown, basic_ink("אבג")) < 0.6


@pytest.mark.skipif(layout_engine_name() != "raqm", reason="Arabic shaping needs Pillow's raqm layout")
def test_arabic_is_shaped():
    # Joined (shaped) Arabic is narrower than the same letters drawn in their isolated forms one by one.
    font = load_font(None, 48)
    word = "مرحبا"
    joined = font.getlength(word)
    isolated = sum(font.getlength(ch) for ch in word)
    assert joined < isolated
