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
