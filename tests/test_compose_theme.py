import numpy as np
import pytest
from PIL import Image

from pipelines.compose.cards import CardText, render_card
from pipelines.compose.layout import ASPECTS, background, output_size
from pipelines.compose.theme import load_theme
from pipelines.errors import InputError
from pipelines.spec.compose import Layout

REPO_THEME = "themes/brand.yaml"


def test_example_theme_loads():
    from tests.conftest import REPO

    theme = load_theme(REPO / REPO_THEME)
    assert theme.colours.background == "#0f1b2d" and theme.label.position == "bottom-right"


def test_theme_paths_are_relative_to_the_theme_file_and_the_logo_is_drawn(tmp_path):
    logo = np.zeros((40, 120, 4), np.uint8)
    logo[..., 0] = 255
    logo[..., 3] = 255
    (tmp_path / "brand").mkdir()
    Image.fromarray(logo).save(tmp_path / "brand" / "logo.png")
    path = tmp_path / "brand" / "theme.yaml"
    path.write_text("logo: logo.png\ncolours: {background: '#102030'}\n", encoding="utf-8")
    theme = load_theme(path)
    assert theme.logo == tmp_path / "brand" / "logo.png"
    size = (640, 360)
    backdrop = background(size, None, theme.colours.background, None)
    with_logo = render_card(size, CardText("Hello"), theme, backdrop)
    without = render_card(
        size, CardText("Hello"), load_theme(None).model_copy(update={"colours": theme.colours}), backdrop
    )
    red = (with_logo[..., 0] > 200) & (with_logo[..., 1] < 60)
    assert red.sum() > 1000 and ((without[..., 0] > 200) & (without[..., 1] < 60)).sum() == 0


@pytest.mark.parametrize(
    "text, field, words",
    [
        ("colours: {text: red}\n", "colours.text", "pattern"),
        ("logo: missing.png\n", "logo", "file not found"),
        ("crossfade: 9\n", "crossfade", "less than or equal"),
        ("fonts: x\n", "fonts", "Extra inputs"),
        ("- a\n- b\n", None, "expected a mapping"),
    ],
)
def test_bad_theme_is_one_line_naming_file_and_field(tmp_path, text, field, words):
    path = tmp_path / "theme.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_theme(path)
    assert err.value.file == str(path) and err.value.field == field and words in err.value.message


def test_output_sizes_follow_the_aspect():
    clip = (512, 512)
    assert output_size(Layout(), clip, None) == (512, 512)
    assert output_size(Layout(aspect="16:9"), clip, None) == (910, 512)
    assert output_size(Layout(aspect="9:16"), clip, None) == (512, 910)
    assert output_size(Layout(aspect="1:1"), (640, 360), None) == (360, 360)
    assert output_size(Layout(aspect="16:9"), clip, (1920, 1080)) == (1920, 1080)
    assert set(ASPECTS) == {"16:9", "9:16", "1:1"}


def test_background_image_and_bad_colour(tmp_path):
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 100:] = 255
    Image.fromarray(img).save(tmp_path / "bg.png")
    out = background((100, 100), tmp_path / "bg.png", "#000000", None)
    assert out.shape == (100, 100, 3) and out[:, :40].max() == 0 and out[:, 60:].min() == 255
    with pytest.raises(InputError, match="layout.background"):
        background((10, 10), "#zz0000", "#000000", None)
