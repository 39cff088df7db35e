"""Aligned face crops and paste-back for a whole chunk of frames at once, in torch on the engine's device.

The same geometry as pipelines.face.align.warp_to_crop and pipelines.face.blend.paste_back (OpenCV, one frame at a
time on the CPU), batched so that a GPU engine uploads a chunk once, crops, regenerates, pastes and downloads once:

* crop: bilinear warp of the frame into the (W, H) alignment crop (grey 127 outside the frame), rounded to 8-bit
  levels as cv2 does for uint8, then OpenCV's Lanczos-4 resize to R x R (same taps and weights, edges clamped).
* paste-back: the R x R face resized to (W, H) with OpenCV's bicubic taps, warped back into the frame (bilinear)
  and alpha-blended with the feathered mask.

Differences from the OpenCV path (measured in tests/test_face_batch_warp.py): OpenCV quantises warp coordinates to
1/32 px and resizes uint8 in fixed point (here float32, then rounded), so crops differ by at most a level or two on
a few pixels; the feathered mask is eroded and blurred once per crop size in crop pixels and warped with the face,
instead of being eroded and blurred in frame pixels for every frame. Both use w_edge = int(sqrt(mask area)) // 20,
which scales with the face, so the two masks agree up to the rounding of w_edge and the resampling of the mask.

Only the frame region the crop covers is needed: callers pass that region (`FaceWarp.box`, the union over a chunk)
as a tensor, so uploads and downloads do not grow with the frame size.

Determinism: a crop depends only on its frame's pixels and alignment matrix, never on the other frames of the batch
or on the region passed in (coordinates are computed per pixel from the matrix; the region's offset is an exact
integer shift; resizes are fixed-order sums of gathered taps, not matrix products whose summation order could vary
with the batch size). A cache keyed by the source pixels and the matrix can therefore reuse what a crop produces.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pipelines.face.align import FILL_VALUE, crop_footprint, invert_affine

ROI_PAD = 4  # px around the crop's footprint: the bilinear taps at its edge stay inside the region


def cv2_taps(src: int, dst: int, kernel: str) -> tuple[np.ndarray, np.ndarray]:
    """(dst, taps) source indices and weights of OpenCV's resize from `src` to `dst` samples along one axis.

    Pixel centres map as in cv2.resize (x_src = (x + 0.5) * src / dst - 0.5); indices past the edge are clamped, as
    cv2 does; no antialiasing when shrinking (cv2 has none for these kernels). kernel: "lanczos4" (8 taps,
    sinc(d) * sinc(d / 4), normalised) or "cubic" (4 taps, Keys with a = -0.75)."""
    fx = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    sx = np.floor(fx)
    frac = fx - sx
    if kernel == "lanczos4":
        d = frac[:, None] + 3 - np.arange(8)[None]
        w = np.sinc(d) * np.sinc(d / 4)
        w /= w.sum(axis=1, keepdims=True)
        first = sx - 3
    elif kernel == "cubic":
        a = -0.75
        d = np.abs(frac[:, None] - np.arange(-1, 3)[None])
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        w = np.where(d <= 1, near, far)
        first = sx - 1
    else:
        raise ValueError(f"unknown kernel {kernel!r}")
    idx = np.clip(first[:, None] + np.arange(w.shape[1])[None], 0, src - 1).astype(np.int64)
    return idx, w


class _Taps:
    """One axis of a separable resize on a device: gather the taps, weight, sum in a fixed order."""

    def __init__(self, src: int, dst: int, kernel: str, device: torch.device):
        idx, w = cv2_taps(src, dst, kernel)
        self.idx = [torch.as_tensor(idx[:, k], device=device) for k in range(idx.shape[1])]
        self.w = [torch.as_tensor(w[:, k], dtype=torch.float32, device=device) for k in range(w.shape[1])]

    def __call__(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        last = dim in (-1, x.ndim - 1)
        if last:  # gather whole rows, not single floats: resize along the rows of the transposed image
            x = x.transpose(-1, -2).contiguous()
            dim = x.ndim - 2
        shape = [1] * x.ndim
        shape[dim] = -1
        out = term = None
        for idx, w in zip(self.idx, self.w, strict=True):
            term = torch.index_select(x, dim, idx, out=term)
            term.mul_(w.view(shape))
            out = term.clone() if out is None else out.add_(term)
        return out.transpose(-1, -2).contiguous() if last else out


def _round_levels(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp_(0, 255)


def _bilinear(images: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, fill: float) -> torch.Tensor:
    """Sample (B, C, h, w) `images` at (F, N) float64 pixel coordinates, bilinearly; taps outside the image read
    `fill` (cv2's constant border). B is F, or 1 for one image shared by all rows. Returns (F, C, N) float32.

    The image is framed by one pixel of `fill` and the coordinates clamped into that frame, so no tap needs a
    bounds test (a tap that falls outside reads the frame, and past it the clamped sample reads only the frame)."""
    b, c, h, w = images.shape
    f, n = xs.shape
    framed = torch.nn.functional.pad(images, (1, 1, 1, 1), value=fill)
    hp, wp = h + 2, w + 2
    px = (xs + 1).clamp(0, wp - 1)
    py = (ys + 1).clamp(0, hp - 1)
    x0 = torch.floor(px)
    y0 = torch.floor(py)
    fx = (px - x0).to(torch.float32)[:, None]
    fy = (py - y0).to(torch.float32)[:, None]
    x0 = x0.to(torch.int64)
    y0 = y0.to(torch.int64)
    x1 = (x0 + 1).clamp(max=wp - 1)
    y1 = (y0 + 1).clamp(max=hp - 1)
    flat = framed.reshape(b, c, hp * wp)

    def tap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        index = y * wp + x
        if b == f:
            return torch.gather(flat, 2, index[:, None].expand(f, c, n))
        values = torch.gather(flat, 2, index.reshape(1, 1, f * n).expand(1, c, f * n))
        return values.reshape(c, f, n).transpose(0, 1)

    top = tap(x0, y0)
    top.add_((tap(x1, y0) - top).mul_(fx))
    bottom = tap(x0, y1)
    bottom.add_((tap(x1, y1) - bottom).mul_(fx))
    return top.add_((bottom - top).mul_(fy))


def _apply(matrices: torch.Tensor, us: torch.Tensor, vs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, 2, 3) float64 affine matrices applied to (N,) pixel coordinates -> two (F, N) float64 tensors."""
    m = matrices[:, :, :, None]
    xs = m[:, 0, 0] * us + m[:, 0, 1] * vs + m[:, 0, 2]
    ys = m[:, 1, 0] * us + m[:, 1, 1] * vs + m[:, 1, 2]
    return xs, ys


MASK_SAMPLES = 1024  # the feathered mask is drawn with at least this many samples along the crop's long side


def mask_oversampling(crop_size: tuple[int, int]) -> int:
    return max(1, math.ceil(MASK_SAMPLES / max(crop_size)))


def feathered_crop_mask(crop_size: tuple[int, int]) -> np.ndarray:
    """Paste-back alpha over the crop, float32 (H * k, W * k) with k = mask_oversampling(crop_size).

    LatentSync's restore mask in crop pixels: the crop's all-ones mask eroded 2x2, then by a (2 * w_edge)^2 box with
    w_edge = int(sqrt(area)) // 20, then blurred with a Gaussian of size 2 * w_edge + 1 and OpenCV's sigma for that
    size. Upstream does this in frame pixels for every frame; w_edge scales with the face, so doing it once per crop
    size gives the same feather. It is drawn k times oversampled (erosion, kernel and sigma scaled by k) so that it
    stays smooth where a small crop is pasted onto a large face."""
    import cv2

    k = mask_oversampling(crop_size)
    w, h = crop_size
    # Upstream rounds w_edge down in frame pixels, where one pixel is a different fraction of the face for every
    # face size; in crop pixels the unrounded value is the one that matches it for any face size.
    w_edge = math.sqrt((w - 1) * (h - 1)) / 20
    # cv2's 2x2 erosion (anchor 1, 1) takes one pixel off the left and top; the (2 w_edge)^2 box (anchor w_edge)
    # w_edge off the left and top and w_edge - 1 off the right and bottom
    first, last = round((1 + w_edge) * k), round(max(w_edge - 1, 0) * k)
    pad = math.ceil(w_edge + 2) * k
    keep = np.zeros((h * k + 2 * pad, w * k + 2 * pad), np.float32)
    keep[pad + first : pad + h * k - last, pad + first : pad + w * k - last] = 1.0
    if w_edge >= 1:
        sigma = 0.3 * (w_edge - 1) + 0.8  # OpenCV's sigma for a kernel of 2 * w_edge + 1
        radius = round(w_edge * k)
        keep = cv2.GaussianBlur(keep, (2 * radius + 1,) * 2, sigma * k)
    return np.ascontiguousarray(keep[pad : pad + h * k, pad : pad + w * k])


def valid_matrices(matrices: np.ndarray) -> np.ndarray:
    """(F,) bool: alignment matrices that can be inverted (a source without any face has all-zero matrices)."""
    m = np.asarray(matrices, np.float64)
    det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    return np.isfinite(m).all(axis=(-2, -1)) & (np.abs(det) > 1e-12)


class FaceWarp:
    """Crop and paste-back for one alignment crop size (W, H) and face size R, on one device.

    Tables (resize taps, the feathered mask) are built once here; `crops` and `paste` then run on batches."""

    def __init__(self, crop_size: tuple[int, int], resolution: int, device: str | torch.device = "cpu"):
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.resolution = int(resolution)
        self.device = torch.device(device)
        w, h = self.crop_size
        r = self.resolution
        dev = self.device
        self._down_x, self._down_y = _Taps(w, r, "lanczos4", dev), _Taps(h, r, "lanczos4", dev)
        self._up_x, self._up_y = _Taps(r, w, "cubic", dev), _Taps(r, h, "cubic", dev)
        self.mask = torch.as_tensor(feathered_crop_mask(self.crop_size), device=dev)
        self._mask_k = mask_oversampling(self.crop_size)
        vs, us = torch.meshgrid(
            torch.arange(h, dtype=torch.float64, device=dev),
            torch.arange(w, dtype=torch.float64, device=dev),
            indexing="ij",
        )
        self._crop_u, self._crop_v = us.reshape(-1), vs.reshape(-1)

    # ---- geometry on the CPU (tiny) ----------------------------------------------------------------------------
    def footprint(self, matrix: np.ndarray, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the frame pixels one crop reads or writes, padded, clipped to the frame."""
        return crop_footprint(matrix, self.crop_size, frame_hw, ROI_PAD)

    def box(self, matrices: np.ndarray, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """The union of the footprints of a batch's valid matrices (empty box (0, 0, 0, 0) when there is none)."""
        boxes = [
            self.footprint(m, frame_hw)
            for m, ok in zip(matrices, valid_matrices(matrices), strict=True)
            if ok
        ]
        boxes = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
        if not boxes:
            return 0, 0, 0, 0
        b = np.array(boxes)
        return int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max())

    # ---- batched work on the device ----------------------------------------------------------------------------
    def crops(
        self,
        region: torch.Tensor,
        box: tuple[int, int, int, int],
        frame_hw: tuple[int, int],
        matrices: np.ndarray,
    ) -> torch.Tensor:
        """(F, 3, R, R) aligned faces (float32 8-bit levels) from `region` = frames[:, :, y0:y1, x0:x1] (float32,
        (F, 3, y1 - y0, x1 - x0)) and the (F, 2, 3) frame -> crop matrices. Frames whose matrix cannot be inverted
        (no face anywhere in their source) give a uniform grey crop."""
        n = len(matrices)
        w, h = self.crop_size
        ok = valid_matrices(matrices)
        inv = np.zeros((n, 2, 3))
        # far outside any frame: every tap reads the fill
        inv[~ok] = np.array([[0.0, 0.0, -1e6], [0.0, 0.0, -1e6]])
        if ok.any():
            inv[ok] = invert_affine(np.asarray(matrices, np.float64)[ok])
        xs, ys = _apply(torch.as_tensor(inv, device=self.device), self._crop_u, self._crop_v)
        if region.numel() == 0:
            region = torch.full((n, 3, 1, 1), float(FILL_VALUE), device=self.device)
        # the region covers every tap inside the frame (footprints are padded); taps past it are outside the frame
        crop = _bilinear(region, xs - box[0], ys - box[1], float(FILL_VALUE))
        crop = _round_levels(crop.reshape(n, 3, h, w))  # cv2 warps uint8 into uint8
        crop = self._down_y(self._down_x(crop, 3), 2)
        return _round_levels(crop)

    def paste(
        self,
        region: torch.Tensor,
        box: tuple[int, int, int, int],
        faces: torch.Tensor,
        matrices: np.ndarray,
        weights: np.ndarray,
    ) -> torch.Tensor:
        """`region` (F, 3, rh, rw) float32 (the frames' pixels inside `box`) with the (F, 3, R, R) `faces` blended
        in; per-frame `weights` scale the alpha (0 = the region unchanged). Returns float32 8-bit levels."""
        n, _, rh, rw = region.shape
        if rh == 0 or rw == 0:
            return region
        w, h = self.crop_size
        ok = valid_matrices(matrices)
        weights = np.where(ok, np.clip(np.asarray(weights, np.float64), 0.0, 1.0), 0.0)
        m = np.where(
            ok[:, None, None], np.asarray(matrices, np.float64), np.array([[0, 0, -1e6], [0, 0, -1e6]])
        )
        face = self._up_y(
            self._up_x(faces.to(torch.float32), 3), 2
        )  # R x R -> (W, H), unclamped as cv2's float
        vs, us = torch.meshgrid(
            torch.arange(rh, dtype=torch.float64, device=self.device) + box[1],
            torch.arange(rw, dtype=torch.float64, device=self.device) + box[0],
            indexing="ij",
        )
        xs, ys = _apply(torch.as_tensor(m, device=self.device), us.reshape(-1), vs.reshape(-1))
        warped = _bilinear(face, xs, ys, 0.0).reshape(n, 3, rh, rw)
        k = self._mask_k
        mx = (xs + 0.5) * k - 0.5
        my = (ys + 0.5) * k - 0.5
        alpha = _bilinear(self.mask[None, None], mx, my, 0.0).reshape(n, 1, rh, rw)
        alpha = alpha * torch.as_tensor(weights, dtype=torch.float32, device=self.device).view(n, 1, 1, 1)
        return _round_levels(alpha * warped + (1 - alpha) * region)
