import numpy as np
import pytest

from pipelines.compose.overlays import Overlay


def _float_blend(frame, rgba, opacity=1.0):
    """The float blend the fast path must reproduce: r + (s - r) * a / 255, rounded half up."""
    alpha = rgba[..., 3:4].astype(np.float32) * (opacity / 255.0)
    region = frame.astype(np.float32)
    region += (rgba[..., :3].astype(np.float32) - region) * alpha
    return np.clip(region + 0.5, 0, 255).astype(np.uint8)


def test_full_opacity_blend_equals_the_float_blend_for_every_value():
    # every (frame level, overlay level) pair, per channel shifted so the three channels differ, for every alpha
    r, s = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    frame = np.stack([r, r[::-1], r[:, ::-1]], axis=-1)
    rgb = np.stack([s, s[:, ::-1], s[::-1]], axis=-1)
    for a in range(256):
        rgba = np.concatenate([rgb, np.full((256, 256, 1), a, np.uint8)], axis=-1)
        out = frame.copy()
        Overlay(rgba, 0, 0).blend_onto(out)
        assert np.array_equal(out, _float_blend(frame, rgba)), a


@pytest.mark.parametrize(("x", "y"), [(10, 20), (-7, -5), (90, 70)])
@pytest.mark.parametrize("opacity", [1.0, 0.37])
def test_blend_onto_clips_at_the_frame_edges_and_touches_nothing_else(x, y, opacity):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    out = frame.copy()
    Overlay(rgba, x, y).blend_onto(out, opacity)
    padded = np.zeros(
        (96 + 100, 128 + 100, 4), np.uint8
    )  # the overlay placed on a margin of 50 around the frame
    padded[50 + y : 50 + y + 40, 50 + x : 50 + x + 50] = rgba
    expected = _float_blend(frame, padded[50:146, 50:178], opacity)
    assert np.array_equal(out, expected)
