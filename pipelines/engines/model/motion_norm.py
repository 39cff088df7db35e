"""GroupNorm with per-frame statistics, for AnimateDiff-style motion modules.

The original AnimateDiff motion modules (which LatentSync and EchoMimic V2 were trained with) normalise each frame
on its own; diffusers' `AnimateDiffTransformer3D` pools the statistics over all frames of the clip. Swapping its
`norm` for this subclass keeps the parameter names and shapes of the checkpoint and gives the original's numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm on (B, C, F, H, W) with statistics per frame (original motion modules)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            return super().forward(x)
        b, c, f, h, w = x.shape
        y = x.transpose(1, 2).reshape(b * f, c, h, w)
        y = F.group_norm(y, self.num_groups, self.weight, self.bias, self.eps)
        return y.reshape(b, f, c, h, w).transpose(1, 2)
