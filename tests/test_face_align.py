import cv2
import numpy as np
import pytest

from pipelines.face import mesh
from pipelines.face.align import (
    alignment_matrices,
    face_centred_crop_matrix,
    frame_to_face_matrix,
    invert_affine,
    latentsync_anchors,
    latentsync_template,
    nose_bias,
    similarity_to_template,
    similarity_transform,
    transform_points,
    warp_to_crop,
)
from pipelines.face.blend import feathered_mask, paste_back
from pipelines.face.landmarks import detect_faces
from tests import face_helpers as fh


@pytest.fixture(scope="module")
def face():
    return detect_faces(fh.portrait())[0]


def test_templates():
    t256, t512 = latentsync_template(256), latentsync_template(512)
    assert t256.crop_size == (210, 280) and t512.crop_size == (420, 560)
    assert np.allclose(t256.points, np.array([[17, 20], [58, 20], [37.5, 40]]) * 2.8)
    assert np.allclose(t512.points, t256.points * 2)
    with pytest.raises(ValueError):
        latentsync_template(100)


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (3, 2))
    a = np.radians(17.0)
    sr = 1.7 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ sr.T + [30.0, -12.0]
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], sr, atol=1e-9) and np.allclose(m[:, 2], [30.0, -12.0], atol=1e-7)


def test_similarity_never_reflects():
    src = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 8.0]])
    mirrored = src * [-1.0, 1.0]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    assert np.isclose(m[0, 0], m[1, 1]) and np.isclose(m[0, 1], -m[1, 0])  # rotation + uniform scale only


def test_anchors_are_brows_and_nose(face):
    a = latentsync_anchors(face.points)
    assert a.shape == (3, 2) and np.array_equal(a, np.round(a))
    p = face.points
    assert a[0, 0] < p[mesh.NOSE_TIP, 0] < a[1, 0]  # brows either side of the nose
    assert (
        a[0, 1] < p[mesh.LEFT_PUPIL, 1] < a[2, 1] < p[mesh.UPPER_LIP_TOP, 1]
    )  # brow above eye above nose centre
    batch = latentsync_anchors(np.stack([face.points, face.points + 5]))
    assert batch.shape == (2, 3, 2) and np.allclose(batch[1] - batch[0], 5)


@pytest.mark.parametrize("resolution", [256, 512])
def test_anchors_land_near_the_template(face, resolution):
    t = latentsync_template(resolution)
    m, _ = alignment_matrices(latentsync_anchors(face.points)[None], t, smooth=False)
    mapped = transform_points(m[0], latentsync_anchors(face.points))
    # three anchors vs a fixed triangle: residual of a least-squares fit, a few % of the crop width
    assert np.abs(mapped - t.points).max() < 0.1 * t.crop_size[0]
    crop = warp_to_crop(fh.portrait(), m[0], t)
    assert crop.shape == (resolution, resolution, 3) and crop.dtype == np.uint8


def test_nose_bias_smoothing_follows_the_rule(face):
    t = latentsync_template(256)
    base = latentsync_anchors(face.points)
    seq = np.stack([base, base + [0, 3], base + [2, -1]])
    seq[1, 2] += [1.0, 2.0]  # move the nose against the brows so the bias changes
    plain, _ = alignment_matrices(seq, t, smooth=False)
    smooth, last = alignment_matrices(seq, t, smooth=True)
    cur = [nose_bias(a, t.points) for a in seq]
    expect = [cur[0]]
    for c in cur[1:]:
        expect.append(0.2 * expect[-1] + 0.8 * c)
    for i in range(3):
        assert np.allclose(smooth[i, :, 2] - plain[i, :, 2], expect[i])
    assert np.allclose(last, expect[-1])
    # aligning in two pieces, carrying the bias, gives the same matrices
    first, carry = alignment_matrices(seq[:1], t)
    rest, _ = alignment_matrices(seq[1:], t, prev_bias=carry)
    assert np.allclose(np.concatenate([first, rest]), smooth)


def test_round_trip_returns_the_original(face):
    img = fh.portrait()
    t = latentsync_template(256)
    m, _ = alignment_matrices(latentsync_anchors(face.points)[None], t)
    m = m[0]
    crop = warp_to_crop(img, m, t)
    back = paste_back(np.zeros_like(img), crop, m, t.crop_size)
    soft, _, (x0, y0, x1, y1) = feathered_mask(m, t.crop_size, img.shape[:2])
    inside = soft > 0.999
    assert inside.sum() > 6000  # the crop covers ~116x147 px of the frame
    diff = np.abs(back[y0:y1, x0:x1].astype(int) - img[y0:y1, x0:x1])[inside]
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 16  # two resamplings (affine + 210x280<->256x256)
    assert np.allclose(invert_affine(invert_affine(m)), m)


def test_frame_to_face_matrix_places_points_on_the_face_image():
    img = np.zeros((400, 400, 3), np.uint8)
    cv2.circle(img, (230, 170), 3, (255, 255, 255), -1)
    t = latentsync_template(256)
    anchors = np.array([[160.0, 150.0], [240.0, 150.0], [200.0, 190.0]])
    m, _ = alignment_matrices(anchors[None], t, smooth=False)
    crop = warp_to_crop(img, m[0], t)[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0 : crop.shape[0], 0 : crop.shape[1]]
    seen = np.array([(xs * crop).sum(), (ys * crop).sum()]) / crop.sum()
    assert np.allclose(transform_points(frame_to_face_matrix(m[0], t), [230.0, 170.0]), seen, atol=0.5)


def test_face_centred_crop(face):
    m = face_centred_crop_matrix(face.points, size=512)
    assert m[0, 1] == 0 and m[1, 0] == 0 and m[0, 0] == m[1, 1]  # upright, unstretched
    eyes = transform_points(m, face.points[[mesh.LEFT_PUPIL, mesh.RIGHT_PUPIL]])
    assert np.allclose(eyes.mean(axis=0), [256, 0.40 * 512], atol=1e-6)
    assert np.isclose(np.linalg.norm(eyes[1] - eyes[0]), 0.22 * 512)
    generic = similarity_to_template(face.points, eyes, indices=(mesh.LEFT_PUPIL, mesh.RIGHT_PUPIL))
    assert np.allclose(generic, m, atol=1e-6)


def test_degenerate_points_are_refused():
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.zeros((3, 2)), latentsync_template(256).points)
    with pytest.raises(ValueError):
        alignment_matrices(np.zeros((3, 2)), latentsync_template(256))  # missing the frame axis
