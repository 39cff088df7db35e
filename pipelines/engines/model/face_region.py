"""Aligned face crops and their paste-back for a chunk of frames, with one upload and one download per chunk.

The geometry is pipelines.face.batch_warp (FaceWarp: OpenCV's warpAffine/resize conventions in torch); this module
is the per-chunk bookkeeping around it that every face-regenerating engine needs:

    warp = FaceWarp(template.crop_size, resolution, device)                         # once per engine and device
    region = FaceRegions.upload(frames, matrices, warp, device, pinned=cuda)        # on the prefetch thread
    keys = [crop_key(f, m, warp) for f, m in zip(frames, matrices)]                 # content keys (latent_cache)
    faces = model(region.crops / 127.5 - 1)                                          # (F, 3, R, R) 8-bit levels
    out = region.paste(warp, faces, weights)                                         # list of (h, w, 3) uint8

Only the union of the chunk's crop footprints (the face region, `FaceWarp.box`) goes to the device, as uint8,
and only it comes back; frames of different sizes (a look clip of another size) form separate groups. `weights`
are the per-frame blend weights of the regenerated face (0 = the source frame passes through unchanged; see
pipelines.face.blend.passthrough_crossfade).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class FrameGroup:
    """The frames of a chunk that share one size: their output copies (CPU) and face region (device)."""

    members: list[int]  # positions in the chunk
    frame_hw: tuple[int, int]
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the region in the frame
    images: np.ndarray  # (G, h, w, 3) uint8: the source frames, becoming the output frames
    region: Any  # (G, 3, y1 - y0, x1 - x0) float32 tensor on the device


@dataclass
class FaceRegions:
    """A chunk's aligned crops (F, 3, R, R) float 8-bit levels on the device, and what pasting back needs."""

    crops: Any
    matrices: np.ndarray  # (F, 2, 3) frame -> crop
    groups: list[FrameGroup]

    @classmethod
    def upload(
        cls, frames: list[np.ndarray], matrices: np.ndarray, warp: Any, device: Any, pinned: bool = False
    ):
        """Upload each size group's face region once (pinned host memory and a non-blocking copy with `pinned`)
        and crop every frame on the device."""
        import torch

        matrices = np.asarray(matrices, np.float64)
        shapes: dict[tuple[int, int], list[int]] = {}
        for j, f in enumerate(frames):
            shapes.setdefault(f.shape[:2], []).append(j)
        r = warp.resolution
        crops = torch.empty((len(frames), 3, r, r), dtype=torch.float32, device=device)
        groups = []
        for hw, members in shapes.items():
            box = warp.box(matrices[members], hw)
            x0, y0, x1, y1 = box
            images = np.stack([frames[j] for j in members])
            host = torch.from_numpy(np.ascontiguousarray(images[:, y0:y1, x0:x1]))
            if pinned:
                host = host.pin_memory()
            region = host.to(device, non_blocking=pinned).permute(0, 3, 1, 2).float()
            crops[members] = warp.crops(region, box, hw, matrices[members])
            groups.append(FrameGroup(members, hw, box, images, region))
        return cls(crops, matrices, groups)

    @property
    def tensors(self) -> list[Any]:
        """The device tensors (for prefetch.adopt)."""
        return [self.crops, *(g.region for g in self.groups)]

    def paste(self, warp: Any, faces: Any, weights: np.ndarray) -> list[np.ndarray]:
        """The output frames: each group's faces (F, 3, R, R) 8-bit levels pasted on the device with the feathered
        mask, its region downloaded once; groups whose weights are all 0 are the source frames unchanged."""
        out: list[np.ndarray] = [None] * len(self.matrices)  # type: ignore[list-item]
        weights = np.asarray(weights, np.float64)
        for g in self.groups:
            members = g.members
            if weights[members].max(initial=0.0) > 0 and g.region.numel():
                x0, y0, x1, y1 = g.box
                pasted = warp.paste(g.region, g.box, faces[members], self.matrices[members], weights[members])
                # levels are whole numbers in 0..255: the uint8 conversion is exact; one download per group
                g.images[:, y0:y1, x0:x1] = pasted.byte().permute(0, 2, 3, 1).cpu().numpy()
            for k, j in enumerate(members):
                out[j] = g.images[k]
        return out


def crop_key(frame: np.ndarray, matrix: np.ndarray, warp: Any) -> str:
    """Content key of one crop: what it is computed from (the pixels under its footprint, the matrix, the frame's
    size); the crop itself does not depend on anything else (pipelines.face.batch_warp). Add the device, dtype and
    face size to it before using it as a cache key."""
    from pipelines.face.batch_warp import valid_matrices

    h = hashlib.blake2b(digest_size=16)
    m = np.ascontiguousarray(matrix, np.float64)
    h.update(np.array(frame.shape, np.int64).tobytes())
    h.update(m.tobytes())
    if valid_matrices(m[None])[0]:
        x0, y0, x1, y1 = warp.footprint(m, frame.shape[:2])
        h.update(np.array([x0, y0, x1, y1], np.int64).tobytes())
        h.update(np.ascontiguousarray(frame[y0:y1, x0:x1]).tobytes())
    return h.hexdigest()
