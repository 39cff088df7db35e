"""The pose encoder: drawn hand-pose images -> features added to the denoiser's first convolution.

Upstream (src/models/pose_encoder.py): conv_in, then per width step a 3x3 conv and a stride-2 3x3 conv, SiLU after
every convolution but the last; conv_out is zero-initialised, so an untrained encoder adds nothing. Names match
the official `pose_encoder.pth` (conv_in, blocks.0-5, conv_out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class PoseEncoder(ModelMixin, ConfigMixin):
    """(N, 3, H, W) pose images in [0, 1] -> (N, embedding_channels, H / 8, W / 8) for 4 widths."""

    @register_to_config
    def __init__(
        self,
        embedding_channels: int = 320,
        conditioning_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 96, 256),
    ):
        super().__init__()
        widths = tuple(block_out_channels)
        self.conv_in = nn.Conv2d(conditioning_channels, widths[0], kernel_size=3, padding=1)
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            blocks.append(nn.Conv2d(c_in, c_in, kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(widths[-1], embedding_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, poses: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(poses))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)
