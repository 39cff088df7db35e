"""What the preview paints where the warp uncovers something the portrait never showed: the inside of the
mouth, closed lids. Real portrait (scikit-image's astronaut), real MediaPipe landmarks, real warps."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from pipelines.engines.preview.engine import PreviewEngine
from pipelines.expression.warp import FaceRig, _lids
from pipelines.face import mesh
from tests.preview_helpers import MemoryCache, portrait_path, prepared, settings

LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def colour():
    prep = prepared()
    return prep.frame, prep.rig


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    image = cv2.imread(str(portrait_path()), cv2.IMREAD_GRAYSCALE)
    path = tmp_path_factory.mktemp("grey") / "grey.png"
    cv2.imwrite(str(path), image)
    persona = SimpleNamespace(source=path, source_kind="image")
    prep = PreviewEngine().prepare(persona, settings(), MemoryCache())
    return prep.frame, prep.rig


def _opening(rig: FaceRig, coef, shape) -> np.ndarray:
    top, bottom = rig.patches[-1].gap_lines(coef)
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(np.concatenate([top, bottom[::-1]])).astype(np.int32)], 1)
    return cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0


def test_a_greyscale_portrait_gets_a_greyscale_interior(grey):
    frame, rig = grey
    params = {"mouth_open": 1.0}
    out = rig.apply(frame, params)
    inside = _opening(rig, rig.coefficients(params), out.shape)
    assert inside.sum() > 50, "the mouth must open"
    px = out[inside][:, :3].astype(int)
    assert (px.max(1) - px.min(1)).max() <= 2, "no hue may appear inside a grey mouth"
    # shaded, not one flat colour: a dark cavity and brighter teeth and tongue
    assert np.percentile(px[:, 0], 95) - np.percentile(px[:, 0], 5) > 40


def test_the_interior_takes_the_portraits_own_colours(colour):
    frame, rig = colour
    params = {"mouth_open": 1.0}
    out = rig.apply(frame, params)
    px = out[_opening(rig, rig.coefficients(params), out.shape)][:, :3].astype(np.float64)
    lips = rig.palette.lips
    # the darkest part is a darkened lip colour: its red/green balance is the lips' own
    dark = px[px @ LUMA < np.percentile(px @ LUMA, 30)].mean(0)
    assert dark[0] / max(dark[1], 1) == pytest.approx(lips[0] / lips[1], rel=0.35)


def test_the_lower_lip_stays_visible_at_full_opening(colour):
    frame, rig = colour
    params = {"mouth_open": 1.3}
    coef = rig.coefficients(params)
    out = rig.apply(frame, params)
    moved = rig.displaced_landmarks(params)
    lips = rig.palette.lips @ LUMA
    cavity = rig.palette.cavity @ LUMA
    # along the middle of the lower lip, halfway between its inner and outer edges
    inner = moved[[87, 14, 317]]
    outer = moved[[84, 17, 314]]
    for a, b in zip(inner, outer, strict=True):
        x, y = np.round((a + b) / 2).astype(int)
        value = out[y - 1 : y + 2, x - 1 : x + 2, :3].reshape(-1, 3).mean(0) @ LUMA
        assert abs(value - lips) < 0.35 * lips, "the lower lip must keep its colour"
        assert value > cavity + 0.5 * (lips - cavity)
    assert coef["mouth_open"] == pytest.approx(1.3)


def test_no_step_along_the_cheek_beyond_the_mouth_corners(colour):
    """An opening mouth parts the lips but never tears the cheeks. Warping a vertical ramp (value = row) with the
    portrait's landmarks shows the field itself: out(x, y) = y + dy(x, y), so across the mouth-corner line the
    ramp's slope stays positive (no fold, no repeated rows) and near 1 (no step) when the lower face moves as
    one smooth field."""
    _, rig = colour
    h, w = rig.height, rig.width
    ramp = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, 1)
    fresh = FaceRig(rig.points, (h, w))
    out = fresh.apply(np.dstack([ramp] * 3), {"mouth_open": 1.3})[..., 0]
    u = fresh.unit
    for corner, direction in ((mesh.MOUTH_CORNER_LEFT, -1), (mesh.MOUTH_CORNER_RIGHT, 1)):
        cx, cy = rig.points[corner]
        xs = np.round(cx + direction * np.linspace(0.08, 0.5, 12) * u).astype(int)
        slope = np.diff(out[int(cy - 0.4 * u) : int(cy + 0.4 * u), xs], axis=0)
        assert slope.min() > 0.3 and slope.max() < 2.0, (
            f"slope {slope.min():.2f}..{slope.max():.2f} by the corner"
        )


@pytest.mark.parametrize("blink", [0.3, 0.6, 0.8, 1.0])
def test_blinks_never_blend_two_eye_states(colour, blink):
    """Wherever the lid has come down, the picture is lid: no iris or eye white shows through it."""
    frame, rig = colour
    out = rig.apply(frame, {"blink": blink})
    rest = rig.points
    u = rig.unit
    for contour in (mesh.LEFT_EYE, mesh.RIGHT_EYE):
        upper, lower = _lids(contour)
        down = rest[upper] + 0.86 * blink * (rest[lower] - rest[upper])
        band = np.zeros(out.shape[:2], np.uint8)
        cv2.fillPoly(band, [np.round(np.concatenate([rest[upper], down[::-1]])).astype(np.int32)], 1)
        band = cv2.erode(band, np.ones((3, 3), np.uint8)) > 0
        if band.sum() < 5:
            continue
        above = rest[upper].mean(0) - [0, 0.18 * u]
        x, y = np.round(above).astype(int)
        skin = frame[y - 2 : y + 3, x - 2 : x + 3, :3].reshape(-1, 3).mean(0) @ LUMA
        lid = out[band][:, :3] @ LUMA
        # the lashes are a thin dark line at the lid's edge, eroded away here; the iris would be far darker
        assert np.percentile(lid, 5) > 0.6 * skin, f"iris shows through the lid at blink {blink}"
        assert lid.std() < 0.15 * skin, f"the lid is a mix of two eye states at blink {blink}"


# ---- the painted interior on its own: a drawn opening, no landmarks (what mouth_fill guarantees) ----------
UNIT = 120.0
SKIN, LIPS, TEETH_RGB = (200.0, 150.0, 130.0), (180.0, 90.0, 90.0), np.array((232.0, 226.0, 214.0))


def _lines(sag: float = 8.0, gap: float = 40.0, n: int = 11):
    """An opening 120 px wide: `top` sagging like an upper lip's edge, `bottom` `gap` px under its middle."""
    cx = np.linspace(-1.0, 1.0, n)
    xs = 150.0 + 60.0 * cx
    top = np.stack([xs, 150.0 + sag * (1 - cx**2)], 1)
    bottom = np.stack([xs, 150.0 + (sag + gap) * (1 - cx**2)], 1)
    return top, bottom


def _canvas(top, bottom, grey: bool = False) -> np.ndarray:
    """Skin, with lips 14 px thick above `top` and below `bottom`."""
    image = np.zeros((300, 300, 3), np.uint8)
    image[:] = np.array(SKIN) @ LUMA if grey else SKIN
    lips = np.concatenate([top - [0, 14], bottom[::-1] + [0, 14]])
    cv2.fillPoly(
        image, [np.round(lips).astype(np.int32)], [float(np.array(LIPS) @ LUMA)] * 3 if grey else LIPS
    )
    return image


def _palette(grey: bool = False):
    from pipelines.expression.mouth_interior import MouthPalette

    colours = [np.array(c, np.float32) for c in (LIPS, SKIN, TEETH_RGB)]
    if grey:
        colours = [np.full(3, c @ LUMA, np.float32) for c in colours]
    return MouthPalette(*colours)


def _luma(image: np.ndarray) -> np.ndarray:
    return image[..., :3].astype(np.float64) @ LUMA


def _fill(opening: float = 1.0, teeth: float = 1.0, grey: bool = False, gap: float = 40.0):
    from pipelines.expression.mouth_interior import mouth_fill

    top, bottom = _lines(gap=gap)
    image = _canvas(top, bottom, grey)
    mouth_fill(image, top, bottom, UNIT, opening, teeth, _palette(grey))
    return image, top


def test_the_upper_teeth_are_shaded_separated_teeth_not_a_flat_bar():
    from pipelines.expression.mouth_interior import TEETH

    out, top = _fill()
    luma = _luma(out)
    band = TEETH * UNIT  # at the middle of the mouth
    x = 150
    y_top = int(round(150 + 8))
    middle = luma[y_top + int(band * 0.55), x - 4 : x + 5].max()
    gum = luma[y_top + 1, x - 4 : x + 5].max()
    cavity = luma[y_top + int(band + 0.4 * (40 - band)), x]
    # lighter than the cavity and the lips, never brighter than the persona's own teeth
    assert middle > cavity + 100 and middle > LIPS @ LUMA + 60
    assert middle <= TEETH_RGB @ LUMA + 1  # (+ rounding)
    # the upper lip's shadow falls on the teeth's top (the gum line), not a flat white bar
    assert gum < 0.9 * middle
    # soft, faint darker lines between the teeth, following the band's curve: the luma half-way down the band,
    # column by column, dips at each gap between two teeth (the incisors' middle, their sides, the next teeth),
    # but by a tenth of the teeth's light at most (dips of 40-60 levels read as a second, drawn row of teeth)
    xs = np.arange(100, 201)
    cx = (xs - 150) / 60.0
    rows = np.round(150 + 8 * (1 - cx**2) + 0.55 * band * np.sqrt(1 - cx**2)).astype(int)
    along = luma[rows, xs]
    depth = np.array([min(along[i - 3], along[i + 3]) - along[i] for i in range(3, len(along) - 3)])
    dips = np.flatnonzero(depth > 4) + 3
    groups = np.split(dips, np.flatnonzero(np.diff(dips) > 2) + 1) if len(dips) else []
    assert len(groups) >= 5, f"{len(groups)} gaps between teeth"
    assert any(abs(100 + g.mean() - 150) <= 2 for g in groups), "no gap between the central incisors"
    middle = np.abs(xs[3:-3] - 150) <= 35  # (beyond, the band shortens towards the corners)
    assert depth[middle].max() < 0.12 * (TEETH_RGB @ LUMA), f"gaps {depth[middle].max():.0f} levels deep"


def test_the_lips_inner_edge_darkens_into_the_cavity_and_the_corners_pinch_in_shadow():
    """No lip-lit ring round the opening: inside it, nothing is lit like the lip (0.55-0.85 of its luma; the
    lip's inner edge at 0.7 of it drew a sharp lip-coloured band all round the cavity, the opening looked cut
    out and outlined), and the corners, where that band was widest, are in shadow."""
    out, _ = _fill(teeth=0.0)
    top, bottom = _lines()
    inside = np.zeros(out.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(np.concatenate([top, bottom[::-1]])).astype(np.int32)], 1)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0
    lips = np.array(LIPS) @ LUMA
    share = _luma(out)[inside] / lips
    assert ((share > 0.55) & (share < 0.85)).sum() == 0, "a lip-lit band inside the opening"
    corners = _luma(out)[151, [92, 94, 96, 204, 206, 208]] / lips  # a few pixels in from each corner
    assert corners.max() < 0.5, f"the corners lit at {corners.max():.2f} of the lip"


def test_the_cavity_is_lit_down_from_its_dark_back_towards_the_lower_lip():
    """Light comes in through the opening: in the middle of a wide one, the cavity between the teeth and the
    tongue gets lighter downwards, clearly (a range of 23-28 grey levels read as one flat dark shape)."""
    out, _ = _fill(opening=1.0)
    column = _luma(out)[:, 150]
    high, low = column[150 + 8 + 16], column[150 + 8 + 28]  # 0.4 and 0.7 of the 40 px gap
    assert low > 1.4 * high and high < 0.3 * (np.array(LIPS) @ LUMA), f"{high:.0f} -> {low:.0f}"


def test_the_painted_teeth_take_the_light_of_the_portraits_own():
    """A portrait whose parted lips show a sliver of its teeth (a tenth of the opening; the rest shadow and the
    lips' edges the landmarks take in): the palette reads those teeth, and the painted band is lit like them
    (the brightest third of the opening was mostly lip: pink teeth, or none read and a white made up, so the
    painted row was greyer or whiter than the portrait's own)."""
    from pipelines.expression.mouth_interior import mouth_fill, palette_of

    rig = prepared().rig
    pts = rig.points
    image = np.zeros((rig.height, rig.width, 3), np.uint8)
    image[:] = SKIN
    cv2.fillPoly(image, [np.round(pts[list(mesh.LIPS_OUTER)]).astype(np.int32)], LIPS)
    opening = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(opening, [np.round(pts[list(mesh.LIPS_INNER)]).astype(np.int32)], 1)
    ys, _ = np.nonzero(opening)
    rows = np.arange(image.shape[0])[:, None]
    shadow = (opening > 0) & (rows >= np.quantile(ys, 0.12)) & (rows < np.quantile(ys, 0.6))
    own = np.array((150.0, 140.0, 135.0))  # teeth in the parted lips' shade
    image[(opening > 0) & (rows < np.quantile(ys, 0.1))] = own
    image[shadow] = (40, 20, 20)
    palette = palette_of(image, pts, rig.unit, teeth_visible=True)
    np.testing.assert_allclose(palette.teeth, own, atol=8)

    top, bottom = _lines()
    canvas = _canvas(top, bottom)
    mouth_fill(canvas, top, bottom, UNIT, 1.0, 1.0, palette)
    band = _luma(canvas)[158 + 4 : 158 + int(0.13 * UNIT) - 1, 140:161]  # under the gum line, above the tips
    assert abs(band.mean() - own @ LUMA) < 0.12 * (own @ LUMA), (
        f"band {band.mean():.0f}, own {own @ LUMA:.0f}"
    )


def test_under_a_parted_portraits_own_teeth_the_painted_teeth_join_them_without_a_lip_line():
    """A portrait whose parted lips show the upper teeth's upper part: the painted band continues them from
    `top`, with no lip-coloured line between the two (it read as two rows of teeth); the corners keep the
    lips' edge."""
    from pipelines.expression.mouth_interior import mouth_fill

    top, bottom = _lines()
    image = _canvas(top, bottom)
    xs = np.arange(135, 166)
    top_y = np.round(150 + 8 * (1 - ((xs - 150) / 60.0) ** 2)).astype(int)
    for x, y in zip(xs, top_y, strict=True):
        image[y - 8 : y, x] = TEETH_RGB  # the portrait's own teeth, just above `top` in the middle
    mouth_fill(image, top, bottom, UNIT, 1.0, 0.4, _palette())
    luma = _luma(image)
    join = np.array([luma[y - 1 : y + 2, x].min() for x, y in zip(xs, top_y, strict=True)])
    lips, teeth = np.array(LIPS) @ LUMA, np.array(TEETH_RGB) @ LUMA
    assert np.median(join) > (lips + teeth) / 2, f"a darker line where the teeth join: {np.median(join):.0f}"


def test_a_wide_opening_shows_a_tongue_low_in_the_cavity():
    out, _ = _fill(opening=1.0)
    luma = _luma(out)
    x = 150
    high = luma[158 + 20, x]  # the cavity's middle, under the teeth
    lowest = 158 + 26 + int(np.argmax(luma[158 + 26 : 158 + 40, x]))  # the brightest of its lowest third
    assert luma[lowest, x] > high + 15, "the tongue's lit top lies low in the cavity"
    px = out[lowest, x].astype(float)
    assert px[0] / px[1] == pytest.approx(LIPS[0] / LIPS[1], rel=0.25), "the tongue takes the lips' hue"


def test_the_tongue_rises_to_the_lower_lip_without_a_crescent():
    """Down the middle of a wide opening, from the cavity's darkest row to the lower lip, the picture only gets
    lighter: a tongue lit on a narrow ridge and darker again towards the lip read as a thin crescent, a second
    lower lip drawn inside the mouth (its luma there fell 19 levels after the ridge)."""
    out, _ = _fill(opening=1.0)
    column = _luma(out)[158:215, 150].astype(float)
    darkest = int(np.argmin(column))
    lip = darkest + int(np.argmax(column[darkest:] >= 0.95 * column[-1]))
    down = column[darkest : lip + 1]
    assert len(down) > 10
    assert (np.maximum.accumulate(down) - down).max() <= 3.0, "a darker band between the tongue and the lip"


def test_the_fringe_along_the_lips_inner_edge_is_painted_over_and_the_lip_kept():
    """The warp leaves a line of the resting mouth's pixels (smeared teeth) along the lips' inner edges: the
    fill paints the lip's shadowed inner edge over it, and leaves the lip a few pixels further out as it was."""
    from pipelines.expression.mouth_interior import mouth_fill

    top, bottom = _lines()
    image = _canvas(top, bottom)
    xs = np.arange(120, 181)
    under = np.round(150 + 48 * (1 - ((xs - 150) / 60.0) ** 2) + 1).astype(int)
    image[under, xs] = 255  # a white line one pixel under the lower lip's inner edge
    before = image.copy()
    mouth_fill(image, top, bottom, UNIT, 1.0, 1.0, _palette())
    fringe = _luma(image)[under, xs]
    lips = np.array(LIPS) @ LUMA
    assert np.median(fringe) < 0.85 * lips and fringe.max() < (lips + 255) / 2, "the fringe stays white"
    lip = under + 7  # half-way into the lip
    np.testing.assert_array_equal(image[lip, xs], before[lip, xs])


def test_a_grey_palette_paints_grey_teeth_tongue_and_cavity():
    out, _ = _fill(grey=True)
    px = out.reshape(-1, 3).astype(int)
    assert (px.max(1) - px.min(1)).max() <= 1


def test_the_same_opening_paints_the_same_interior_and_a_small_change_a_small_one():
    a, _ = _fill(0.8)
    b, _ = _fill(0.8)
    np.testing.assert_array_equal(a, b)
    steps = [_luma(_fill(o, gap=50 * o)[0]) for o in np.arange(0.3, 1.01, 0.02)]
    change = max(np.abs(p - q).mean() for p, q in zip(steps, steps[1:], strict=False))
    assert change < 1.5, f"the interior jumps by {change:.2f} grey levels for 0.02 of opening"


def test_an_engine_frame_repeats_its_interior_for_a_repeated_opening(colour):
    frame, rig = colour
    source = frame.copy()
    # as the engine calls it: one source, a head motion, the output buffer passed back
    matrix = np.array([[1.0, 0.0, -3.0], [0.0, 1.0, -2.0]])
    size = (frame.shape[1] - 6, frame.shape[0] - 4)
    out = rig.apply_moved(source, {"mouth_open": 0.8}, matrix, size)
    first = out.copy()
    rig.apply_moved(source, {"mouth_open": 0.35}, matrix, size, out=out)
    again = rig.apply_moved(source, {"mouth_open": 0.8}, matrix, size, out=out)
    np.testing.assert_array_equal(first, again)
