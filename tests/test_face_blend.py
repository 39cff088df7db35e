import cv2
import numpy as np
import pytest

from pipelines.face.align import alignment_matrices, latentsync_anchors, latentsync_template, warp_to_crop
from pipelines.face.blend import feathered_mask, paste_back
from pipelines.face.landmarks import detect_faces
from tests import face_helpers as fh


@pytest.fixture(scope="module")
def aligned():
    img = fh.portrait()
    t = latentsync_template(256)
    m, _ = alignment_matrices(latentsync_anchors(detect_faces(img)[0].points)[None], t)
    return img, t, m[0]


def test_pixels_outside_the_mask_are_unchanged(aligned):
    img, t, m = aligned
    red = np.zeros((256, 256, 3), np.uint8)
    red[..., 0] = 255
    out = paste_back(img, red, m, t.crop_size)
    soft, _, (x0, y0, x1, y1) = feathered_mask(m, t.crop_size, img.shape[:2])
    alpha = np.zeros(img.shape[:2], np.float32)
    alpha[y0:y1, x0:x1] = soft
    assert np.array_equal(out[alpha == 0], img[alpha == 0])
    assert (alpha == 0).mean() > 0.8
    inner = alpha > 0.999
    assert np.all(out[inner][:, 0] == 255) and np.all(out[inner][:, 1:] == 0)
    # a feathered edge, not a cut: some pixels are partly blended
    assert ((alpha > 0.05) & (alpha < 0.95)).sum() > 500


def test_soft_mask_matches_the_full_frame_recipe(aligned):
    """The ROI shortcut must give what the recipe gives on the whole frame."""
    img, t, m = aligned
    h, w = img.shape[:2]
    cw, ch = t.crop_size
    warped = cv2.warpAffine(
        np.ones((ch, cw), np.float32), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    eroded = cv2.erode(warped, np.ones((2, 2), np.uint8))
    w_edge = int(eroded.sum() ** 0.5) // 20
    centre = cv2.erode(eroded, np.ones((2 * w_edge, 2 * w_edge), np.uint8))
    k = 2 * w_edge + 1
    full = cv2.GaussianBlur(centre, (k, k), 0.3 * ((k - 1) * 0.5 - 1) + 0.8)
    soft, _, (x0, y0, x1, y1) = feathered_mask(m, t.crop_size, (h, w))
    ours = np.zeros((h, w), np.float32)
    ours[y0:y1, x0:x1] = soft
    assert np.abs(ours - full).max() < 5e-3  # fixed-point warp rounding differs with the origin


def test_weight_scales_the_blend(aligned):
    img, t, m = aligned
    face = warp_to_crop(np.zeros_like(img), m, t)  # black where the face was
    assert np.array_equal(paste_back(img, face, m, t.crop_size, weight=0.0), img)
    full = paste_back(img, face, m, t.crop_size).astype(int)
    half = paste_back(img, face, m, t.crop_size, weight=0.5).astype(int)
    moved = np.abs(full - img).sum(axis=-1) > 30
    ratio = np.abs(half - img)[moved].sum() / np.abs(full - img)[moved].sum()
    assert 0.45 < ratio < 0.55


def test_crop_partly_outside_the_frame():
    img = fh.portrait()[:150]  # chin cut off: the crop reaches below the frame
    t = latentsync_template(256)
    faces = detect_faces(img)
    assert faces
    m, _ = alignment_matrices(latentsync_anchors(faces[0].points)[None], t)
    crop = warp_to_crop(img, m[0], t)
    assert (crop[-20:] == 127).all()  # upstream's grey fill below the frame
    out = paste_back(img, crop, m[0], t.crop_size)
    assert out.shape == img.shape and np.abs(out.astype(int) - img).mean() < 2
