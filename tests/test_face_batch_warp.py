"""The batched torch crop / paste-back (pipelines.face.batch_warp) against the OpenCV per-frame path."""

import cv2
import numpy as np
import pytest
import torch

from pipelines.face.align import alignment_matrices, latentsync_anchors, latentsync_template, warp_to_crop
from pipelines.face.batch_warp import FaceWarp, cv2_taps, valid_matrices
from pipelines.face.blend import feathered_mask, paste_back
from pipelines.face.landmarks import detect_faces
from pipelines.face.mask import latentsync_mask
from tests import face_helpers as fh


@pytest.fixture(scope="module")
def scene():
    """The portrait on a wider canvas (the crop reaches past the portrait's own border) and its alignment."""
    canvas = np.full((600, 800, 3), 90, np.uint8)
    canvas[40:552, 150:662] = fh.portrait()
    points = detect_faces(canvas)[0].points
    return canvas, points


def _matrices(points, resolution, shifts=((0.0, 0.0),)):
    t = latentsync_template(resolution)
    m = alignment_matrices(latentsync_anchors(points[None]), t)[0][0]
    return t, np.stack([m + np.array([[0, 0, dx], [0, 0, dy]]) for dx, dy in shifts])


def _region(frames, box):
    x0, y0, x1, y1 = box
    return torch.from_numpy(np.stack(frames)[:, y0:y1, x0:x1]).permute(0, 3, 1, 2).float()


def _hwc(t):
    return t.permute(1, 2, 0).numpy().astype(np.uint8)


@pytest.mark.parametrize("kernel,flag", [("lanczos4", cv2.INTER_LANCZOS4), ("cubic", cv2.INTER_CUBIC)])
@pytest.mark.parametrize("src,dst", [(210, 256), (280, 256), (256, 420), (560, 512)])
def test_resize_taps_are_opencvs(kernel, flag, src, dst):
    rng = np.random.default_rng(src + dst)
    img = rng.uniform(0, 255, size=(7, src)).astype(np.float32)
    ref = cv2.resize(img, (dst, 7), interpolation=flag)
    idx, w = cv2_taps(src, dst, kernel)
    mine = (img[:, idx] * w[None]).sum(axis=2)
    assert np.abs(mine - ref).max() < 5e-3  # float32 rounding in cv2


@pytest.mark.parametrize("resolution", [64, 256, 512])
def test_crops_match_warp_to_crop(scene, resolution):
    canvas, points = scene
    t, mats = _matrices(points, resolution, shifts=((0, 0), (3.3, -2.6), (-1.5, 4.25)))
    warp = FaceWarp(t.crop_size, resolution)
    box = warp.box(mats, canvas.shape[:2])
    crops = warp.crops(_region([canvas] * 3, box), box, canvas.shape[:2], mats)
    assert crops.shape == (3, 3, resolution, resolution)
    for j in range(3):
        ref = warp_to_crop(canvas, mats[j], t).astype(int)
        diff = np.abs(_hwc(crops[j]).astype(int) - ref)
        # cv2 quantises warp coordinates to 1/32 px and resizes uint8 in fixed point: a few levels at most
        assert diff.max() <= 6 and diff.mean() < 0.3 and (diff > 1).mean() < 0.01


def test_crop_of_a_frame_does_not_depend_on_its_batch(scene):
    """What the reference-latent cache relies on: same frame + same matrix -> the same crop bits, whatever else is
    in the batch and whatever region of the frame was passed in."""
    canvas, points = scene
    t, mats = _matrices(points, 64, shifts=((0, 0), (40.0, 25.0)))
    warp = FaceWarp(t.crop_size, 64)
    other = np.roll(canvas, 31, axis=0)
    box_two = warp.box(mats, canvas.shape[:2])
    together = warp.crops(_region([canvas, other], box_two), box_two, canvas.shape[:2], mats)
    box_one = warp.box(mats[:1], canvas.shape[:2])
    assert box_one != box_two
    alone = warp.crops(_region([canvas], box_one), box_one, canvas.shape[:2], mats[:1])
    assert torch.equal(together[0], alone[0])


def test_frame_without_alignment_gives_a_grey_crop_and_passes_through(scene):
    canvas, points = scene
    t, mats = _matrices(points, 64)
    mats = np.concatenate([mats, np.zeros((1, 2, 3))])
    assert valid_matrices(mats).tolist() == [True, False]
    warp = FaceWarp(t.crop_size, 64)
    box = warp.box(mats, canvas.shape[:2])
    region = _region([canvas, canvas], box)
    crops = warp.crops(region, box, canvas.shape[:2], mats)
    assert torch.all(crops[1] == 127)
    out = warp.paste(region, box, torch.zeros_like(crops), mats, np.ones(2))
    assert torch.equal(out[1], region[1])
    assert not torch.equal(out[0], region[0])


@pytest.mark.parametrize("resolution,mean_tol", [(64, 0.3), (256, 0.1), (512, 0.1)])
def test_paste_matches_paste_back(scene, resolution, mean_tol):
    canvas, points = scene
    t, mats = _matrices(points, resolution, shifts=((0, 0), (2.5, -1.75)))
    warp = FaceWarp(t.crop_size, resolution)
    box = warp.box(mats, canvas.shape[:2])
    x0, y0, x1, y1 = box
    region = _region([canvas, canvas], box)
    crops = warp.crops(region, box, canvas.shape[:2], mats)
    # a regenerated face, as the pipeline returns it: the crop outside LatentSync's mask, inside it new pixels 30
    # levels off the source (the mask reaches within 9 px of the crop's side, into the feather)
    keep = torch.from_numpy(latentsync_mask(resolution))
    faces = (crops * keep + (crops - 30).clamp(0, 255) * (1 - keep)).floor()
    weights = np.array([1.0, 0.5])
    pasted = warp.paste(region, box, faces, mats, weights)
    for j in range(2):
        ref = paste_back(canvas, _hwc(faces[j]), mats[j], t.crop_size, weights[j]).astype(int)
        mine = canvas.copy()
        mine[y0:y1, x0:x1] = _hwc(pasted[j])
        diff = np.abs(mine.astype(int) - ref)
        outside = np.ones(canvas.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert diff[outside].max() == 0  # the frame outside the region is never touched
        # the portrait's head is tilted by 14 degrees: the per-frame recipe's box erosion is axis-aligned in the
        # frame, ours follows the crop, so alpha differs by up to ~0.25 near the crop's corners (x 30 levels)
        # (the 64 px test size: a 52 x 70 crop on a ~120 px face, w_edge is 3 crop px, rounding matters more)
        assert diff.max() <= 12 and diff[y0:y1, x0:x1].mean() < mean_tol, (
            diff.max(),
            diff[y0:y1, x0:x1].mean(),
        )
    assert torch.equal(warp.paste(region, box, faces, mats, np.zeros(2)), region)  # weight 0: unchanged


@pytest.mark.parametrize("scale", [1.0, 0.7, 0.5, 1.4])
def test_feathered_alpha_matches_the_per_frame_mask(scale):
    """The mask eroded and blurred once in crop pixels gives the alpha the per-frame recipe gives in frame pixels
    (upright faces; the recipe's box erosion is axis-aligned in the frame, so tilted faces differ more at corners)."""
    t = latentsync_template(256)
    m = np.array([[scale, 0.0, -180.0 * scale], [0.0, scale, -120.0 * scale]])
    frame_hw = (900, 900)
    soft, eroded, (x0, y0, x1, y1) = feathered_mask(m, t.crop_size, frame_hw)
    ref = np.zeros(frame_hw)
    ref[y0:y1, x0:x1] = soft * eroded
    warp = FaceWarp(t.crop_size, 256)
    box = warp.box(m[None], frame_hw)
    region = torch.zeros((1, 3, box[3] - box[1], box[2] - box[0]))
    white = torch.full((1, 3, 256, 256), 255.0)
    alpha = np.zeros(frame_hw)
    alpha[box[1] : box[3], box[0] : box[2]] = warp.paste(region, box, white, m[None], np.ones(1))[0, 0] / 255
    diff = np.abs(alpha - ref)
    assert diff.max() < 0.13 and diff.mean() < 0.004, (diff.max(), diff.mean())


def _grid_sample_crop(frame, matrix, crop_size):
    """Upstream's crop convention (kornia warp_affine, align_corners=True: pixel centres at integer coordinates,
    bilinear, fill 127) written independently with torch's grid_sample, in float32."""
    w, h = crop_size
    inv = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    us, vs = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    xs = inv[0, 0] * us + inv[0, 1] * vs + inv[0, 2]
    ys = inv[1, 0] * us + inv[1, 1] * vs + inv[1, 2]
    fh_, fw_ = frame.shape[:2]
    grid = np.stack([2 * xs / (fw_ - 1) - 1, 2 * ys / (fh_ - 1) - 1], axis=-1)[None]
    img = torch.from_numpy(frame.astype(np.float32) - 127).permute(2, 0, 1)[None]
    out = torch.nn.functional.grid_sample(
        img, torch.from_numpy(grid).float(), mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return (out[0].permute(1, 2, 0).numpy() + 127).round().clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("resolution", [256, 512])
def test_crops_follow_upstreams_affine_convention_on_a_real_face(scene, resolution):
    canvas, points = scene
    t, mats = _matrices(points, resolution)
    warp = FaceWarp(t.crop_size, resolution)
    box = warp.box(mats, canvas.shape[:2])
    mine = warp.crops(_region([canvas], box), box, canvas.shape[:2], mats)[0].permute(1, 2, 0).numpy()
    small = _grid_sample_crop(canvas, mats[0], t.crop_size)
    ref = cv2.resize(small, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4).astype(np.float32)
    diff = np.abs(mine - ref)
    assert diff.max() <= 3 and diff.mean() < 0.2, (diff.max(), diff.mean())
    # no geometric offset: a half-pixel convention error would show as a ~0.5 px shift here
    (dx, dy), _ = cv2.phaseCorrelate(ref.mean(-1).astype(np.float64), mine.mean(-1).astype(np.float64))
    assert abs(dx) < 0.02 and abs(dy) < 0.02, (dx, dy)
    # the same check tells the conventions apart: align_corners=False's half-pixel shift is seen
    flipped = mats.copy()
    flipped[0, :, 2] += flipped[0, :, :2].sum(axis=1) * 0.5 - 0.5
    shifted = warp.crops(_region([canvas], box), box, canvas.shape[:2], flipped)[0].permute(1, 2, 0).numpy()
    (sx, sy), _ = cv2.phaseCorrelate(ref.mean(-1).astype(np.float64), shifted.mean(-1).astype(np.float64))
    assert max(abs(sx), abs(sy)) > 0.2, (sx, sy)
