"""Tiny LatentSync components for fast CPU tests, and a weights folder written the way pipelines.weights lays it out."""

from __future__ import annotations

from typing import Any

# same classes and block layout as the real UNet, at toy width (norm groups 8, one layer per block)
TINY_UNET: dict[str, Any] = {
    "block_out_channels": (16, 32, 32, 32),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "num_attention_heads": 2,
    "motion_num_attention_heads": 2,
}

TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (8, 8, 16, 16),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 64,
}
