"""The architecture constants of EchoMimic V2 (upstream antgroup/echomimic_v2 @ a312dec, see echomimic.md).

Both UNets start from lambdalabs/sd-image-variations-diffusers' UNet config (SD-1.x layout, 8 heads). The
denoiser swaps the 768-wide image-embedding cross-attention for whisper-tiny's 384-wide audio and adds motion
modules to every down/up block and to the mid block (configs/inference/inference_v2.yaml).
"""

from __future__ import annotations

from typing import Any

# sd-image-variations-diffusers/unet/config.json: the keys UNet2DConditionModel takes
REFERENCE_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,  # diffusers reads this SD-1.x field as the number of heads
    "use_linear_projection": False,
}

DENOISER_CONFIG: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlockMotion",) * 3 + ("DownBlockMotion",),
    "up_block_types": ("UpBlockMotion",) + ("CrossAttnUpBlockMotion",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 384,
    "num_attention_heads": 8,
    "motion_num_attention_heads": 8,
    "motion_max_seq_length": 32,
    "use_motion_mid_block": True,
    "use_linear_projection": False,
}

# PoseEncoder(320, conditioning_channels=3, block_out_channels=(16, 32, 96, 256)) in infer.py / infer_acc.py
POSE_ENCODER_CONFIG: dict[str, Any] = {
    "embedding_channels": 320,
    "conditioning_channels": 3,
    "block_out_channels": (16, 32, 96, 256),
}

AUDIO_SCALE = 3.0  # the audio cross-attention's output is multiplied by this (hard-coded upstream)
LATENT_SCALE = 0.18215  # sd-vae-ft-mse
RESOLUTION = 768
FPS = 24
MAX_CONTEXT = 32  # the motion modules' positional table: the longest window the denoiser accepts
