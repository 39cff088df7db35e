"""Landmark-driven warps move the intended features (checked by MediaPipe on the result) and nothing else."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipelines.expression.warp import FaceRig, warp_face
from pipelines.face import mesh
from pipelines.face.landmarks import detect_faces
from tests.preview_helpers import prepared

BROWS = list(mesh.LEFT_BROW + mesh.RIGHT_BROW)
EYES = list(mesh.LEFT_EYE + mesh.RIGHT_EYE)
NOSE = [mesh.NOSE_TIP, 4, 5, 195, 2]  # tip, ridge, subnasale; the alae legitimately flare in a smile
MOUTH = list(mesh.LIPS_OUTER)
CHIN = [mesh.CHIN]


@pytest.fixture(scope="module")
def face():
    prep = prepared()
    return prep.frame, prep.points[0]


def _redetect(image) -> np.ndarray:
    faces = detect_faces(image, max_faces=1)
    assert faces, "the warped face must still be a face"
    return faces[0].points.astype(np.float64)


# MediaPipe fits its whole mesh to the face, so a local change nudges far points by a pixel or two: the
# intended features must move several times more than that, everything else stays within it.
NOISE_PX = 2.5


def _shift(before, after, ids) -> np.ndarray:
    return after[ids] - before[ids]


@pytest.mark.parametrize(
    "params, patch",
    [({"brow_raise": 1.0, "blink": 1.0, "eye_open": -0.5}, 0), ({"mouth_open": 0.8, "mouth_width": 0.5}, 1)],
)
def test_only_the_patch_changes_and_its_border_is_untouched(face, params, patch):
    image, points = face
    rig = FaceRig(points, image.shape)
    out = rig.apply(image, params)
    changed = np.any(out != image, axis=-1)
    p = rig.patches[patch]
    inside = np.zeros_like(changed)
    inside[p.y0 : p.y1, p.x0 : p.x1] = True
    assert changed.any()
    assert not changed[~inside].any()
    # the window takes the field to zero at the patch border: no seam can form there
    assert not changed[p.y0, p.x0 : p.x1].any() and not changed[p.y1 - 1, p.x0 : p.x1].any()
    assert not changed[p.y0 : p.y1, p.x0].any() and not changed[p.y0 : p.y1, p.x1 - 1].any()


def test_neutral_parameters_return_the_image(face):
    image, points = face
    np.testing.assert_array_equal(warp_face(image, points, {}), image)


def test_smile_lifts_the_mouth_corners_only(face):
    image, points = face
    before = _redetect(image)
    after = _redetect(warp_face(image, points, {"smile": 1.0}))
    corners = _shift(before, after, list(mesh.MOUTH_CORNERS))
    assert (corners[:, 1] < -2 * NOISE_PX).all(), corners  # up
    assert corners[0, 0] < 0 < corners[1, 0]  # and out
    for ids in (BROWS, NOSE):
        assert np.abs(_shift(before, after, ids)).max() < NOISE_PX


def test_brow_raise_moves_brows_not_mouth(face):
    image, points = face
    before = _redetect(image)
    after = _redetect(warp_face(image, points, {"brow_raise": 1.0}))
    assert _shift(before, after, BROWS)[:, 1].mean() < -2 * NOISE_PX
    for ids in (MOUTH, NOSE, CHIN):
        assert np.abs(_shift(before, after, ids)).max() < NOISE_PX


def test_mouth_open_drops_the_lower_lip_and_jaw(face):
    image, points = face
    before = _redetect(image)
    after = _redetect(warp_face(image, points, {"mouth_open": 0.8}))
    assert _shift(before, after, [mesh.LOWER_LIP_BOTTOM])[0, 1] > 3 * NOISE_PX
    assert _shift(before, after, CHIN)[0, 1] > 2 * NOISE_PX
    for ids in (BROWS, EYES):
        assert np.abs(_shift(before, after, ids)).max() < NOISE_PX


def test_blink_closes_the_lids(face):
    image, points = face
    rig = FaceRig(points, image.shape)
    moved = rig.displaced_landmarks({"blink": 1.0})
    for upper, lower in (mesh.LEFT_EYE_LIDS, mesh.RIGHT_EYE_LIDS):
        rest_gap = points[lower, 1] - points[upper, 1]
        assert moved[lower, 1] - moved[upper, 1] < 0.15 * rest_gap
    assert np.abs(moved[MOUTH] - points[MOUTH]).max() < 0.5
    # the closed eye shows skin: much less contrast inside the eye than when open
    out = rig.apply(image, {"blink": 1.0})
    x0, y0 = points[list(mesh.LEFT_EYE)].min(0).astype(int)
    x1, y1 = points[list(mesh.LEFT_EYE)].max(0).astype(int)
    # (the drawn lid leaves the dark corners of the eye, which a real closed eye shows too)
    assert out[y0:y1, x0:x1].std() < 0.7 * image[y0:y1, x0:x1].std()


def test_a_large_face_grows_its_lid_skin_small_and_still_closes_its_eyes(face):
    # a 1080x1920 video persona's face: its lid skin is grown at SKIN_UNIT and scaled up (a new rig, and so a new
    # skin, every blinking frame); it matches the skin grown at full size and the closed eye still shows skin
    from pipelines.expression.warp import SKIN_UNIT, _grown_skin

    image, points = face
    k = 2 * SKIN_UNIT / FaceRig(points, image.shape).unit + 0.5  # pupils ~2.5x SKIN_UNIT apart
    big = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    pts = points * k + (k - 1) / 2
    rig = FaceRig(pts, big.shape, regions="upper", detail=0.5)
    assert rig.unit > 2 * SKIN_UNIT
    eye = pts[list(mesh.LEFT_EYE)]
    x0, y0 = eye.min(0).astype(int) - 20
    x1, y1 = eye.max(0).astype(int) + 20
    crop = np.ascontiguousarray(big[y0:y1, x0:x1])
    hole = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(hole, [np.round(eye - [x0, y0]).astype(np.int32)], 1)
    hole = cv2.dilate(hole, np.ones((5, 5), np.uint8))
    full = cv2.inpaint(crop, hole, int(0.05 * rig.unit), cv2.INPAINT_TELEA).astype(np.float32)
    small = _grown_skin(crop, hole, rig.unit)
    inside = hole.astype(bool)
    assert np.abs(small - full)[inside].mean() < 5.0  # 3.3 here
    assert np.abs(small[inside].mean(0) - full[inside].mean(0)).max() < 3.0  # the same tone
    out = rig.apply(big, {"blink": 1.0})
    ex0, ey0 = eye.min(0).astype(int)
    ex1, ey1 = eye.max(0).astype(int)
    assert out[ey0:ey1, ex0:ex1].std() < 0.7 * big[ey0:ey1, ex0:ex1].std()


def test_upper_regions_leave_the_mouth_alone(face):
    image, points = face
    params = {"smile": 1.0, "mouth_open": 1.0, "brow_raise": 0.8}
    out = warp_face(image, points, params, regions="upper")
    rig = FaceRig(points, image.shape, regions="upper")
    assert len(rig.patches) == 1
    moved = rig.displaced_landmarks(params)
    assert np.abs(moved[MOUTH] - points[MOUTH]).max() < 0.5
    assert (moved[BROWS, 1] - points[BROWS, 1]).mean() < -2.0
    # the lips keep their pixels (only the cheek lift reaches the corners a little)
    lips = points[list(mesh.LIPS_INNER)]
    x0, y0 = lips.min(0).astype(int)
    x1, y1 = lips.max(0).astype(int)
    diff = np.abs(out[y0:y1, x0:x1].astype(int) - image[y0:y1, x0:x1])
    assert diff.mean() < 1.0
    assert not diff[:, (x1 - x0) // 3 : 2 * (x1 - x0) // 3].any()


def test_rows_aligned_with_params_work_like_dicts(face):
    from pipelines.expression.track import PARAMS

    image, points = face
    row = np.zeros(len(PARAMS), np.float32)
    row[PARAMS.index("smile")] = 0.7
    np.testing.assert_array_equal(warp_face(image, points, row), warp_face(image, points, {"smile": 0.7}))


def _sequence(seed: int) -> list[tuple[dict, np.ndarray]]:
    """Parameters and head motions as a still render meets them: patches switching on and off, fills coming
    and going (blinks, openings, pressed lips), repeats."""
    from pipelines.expression.warp import WARP_PARAMS

    rng = np.random.default_rng(seed)
    sequence = [{}, {"smile": 0.6}, {"smile": 0.6}, {"blink": 0.9, "mouth_open": 0.7}, {}]
    for _ in range(12):
        p = {k: float(rng.random()) if rng.random() < 0.5 else 0.0 for k in WARP_PARAMS}
        if rng.random() < 0.4:
            p.update(mouth_closure=0.9, mouth_open=0.0, jaw=0.0)
        sequence += [p, p] if rng.random() < 0.3 else [p]
    sequence.append({})
    out = []
    for p in sequence:
        matrix = cv2.getRotationMatrix2D((130.0, 140.0), float(rng.uniform(-4, 4)), 1.0)
        matrix[:, 2] += rng.uniform(-6, 6, 2) - 10
        out.append((p, matrix))
    return out


def test_a_moved_warp_reusing_its_buffers_gives_the_images_of_fresh_calls(face):
    # a still persona keeps the eye patch's copy of the source and the output between frames; whatever the
    # order of the parameters, every frame equals a fresh rig's (a resumed render gives the same frames)
    image, points = face
    source = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)
    rig = FaceRig(points, source.shape)
    out = None
    for p, matrix in _sequence(0):
        out = rig.apply_moved(source, p, matrix, (256, 256), out=out)
        fresh = FaceRig(points, source.shape).apply_moved(source, p, matrix, (256, 256))
        np.testing.assert_array_equal(out, fresh)


def test_a_moved_warp_shows_the_warped_face_moved(face):
    # one resampling instead of two: the same picture, a little sharper where the mouth moves (the fills'
    # edges, drawn after the move, differ most)
    image, points = face
    source = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)
    rig = FaceRig(points, source.shape)
    for p, matrix in _sequence(1):
        twice = cv2.warpAffine(
            rig.apply(source, p), matrix, (256, 256), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
        )
        once = rig.apply_moved(source, p, matrix, (256, 256))
        diff = np.abs(once.astype(np.int16) - twice).max(-1)
        assert diff.mean() < 0.5, f"mean difference {diff.mean():.2f} for {p}"
        assert np.percentile(diff, 99) <= 8, f"99th percentile {np.percentile(diff, 99)} for {p}"


def test_a_warmed_rig_gives_the_same_images_as_one_that_computes_its_fields_on_use(face):
    from pipelines.expression.warp import WARP_PARAMS

    image, points = face
    warmed, lazy = FaceRig(points, image.shape), FaceRig(points, image.shape)
    warmed.warm()
    rng = np.random.default_rng(1)
    for _ in range(6):
        p = {k: float(rng.random()) for k in WARP_PARAMS}
        np.testing.assert_array_equal(warmed.apply(image, p), lazy.apply(image, p))


def test_in_place_upper_warp_gives_the_copy_warps_image(face):
    image, points = face
    params = {"brow_raise": 0.6, "blink": 0.7, "smile": 0.5}
    rig = FaceRig(points, image.shape, regions="upper")
    expected = rig.apply(image, params)
    own = image.copy()
    assert rig.apply(own, params, in_place=True) is own
    np.testing.assert_array_equal(own, expected)
    with pytest.raises(ValueError, match="in_place"):
        FaceRig(points, image.shape).apply(image.copy(), params, in_place=True)  # two patches that overlap


def _splat_one_by_one(basis, pts, sigma, values):
    """Each control's Gaussian summed into the grid in turn: what `_Basis._splat` must equal, bit for bit."""
    patch = basis.patch
    gh, gw = patch.grid.shape[:2]
    wsum, vsum = np.zeros((gh, gw)), np.zeros((gh, gw, 2))
    for i, (p, sg) in enumerate(zip(pts, np.broadcast_to(sigma, len(pts)), strict=True)):
        lo = np.maximum(np.floor((p - 3 * sg - patch.origin) / patch.stride).astype(int), 0)
        hi = np.minimum(np.ceil((p + 3 * sg - patch.origin) / patch.stride).astype(int) + 1, [gw, gh])
        if (hi <= lo).any():
            continue
        xs = patch.origin[0] + patch.stride * np.arange(lo[0], hi[0]) - p[0]
        ys = patch.origin[1] + patch.stride * np.arange(lo[1], hi[1]) - p[1]
        w = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sg * sg))
        wsum[lo[1] : hi[1], lo[0] : hi[0]] += w
        vsum[lo[1] : hi[1], lo[0] : hi[0]] += w[..., None] * values[i]
    return wsum, vsum


def test_controls_splatted_at_once_sum_exactly_as_one_by_one(face):
    image, points = face
    rig = FaceRig(points, image.shape)
    rng = np.random.default_rng(2)
    for patch in rig.patches:
        for basis in (b for b in (patch.upper, patch.lower) if b is not None):
            for movers in basis.movers.values():
                idx, disp, sigma = movers.arrays()
                pts = points[idx] + rng.normal(
                    0, 30, (len(idx), 2)
                )  # some boxes cut by the patch edge or empty
                values = disp * 40.0
                wsum, vsum = basis._splat(pts, sigma, values)
                want_w, want_v = _splat_one_by_one(basis, pts, sigma, values)
                np.testing.assert_array_equal(wsum, want_w)
                np.testing.assert_array_equal(vsum, want_v)
