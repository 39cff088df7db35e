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

TINY_AUDIO = {"n_mels": 80, "n_ctx": 1500, "n_state": 32, "n_head": 2, "n_layer": 4}


def tiny_components(seed: int = 0) -> dict[str, Any]:
    """unet, vae, scheduler, audio_encoder: the real classes at toy size with random weights (norms perturbed too)."""
    import torch
    from diffusers import AutoencoderKL

    from pipelines.audio_features.encoder import EncoderDims, WhisperAudioEncoder
    from pipelines.engines.latentsync.pipeline import make_scheduler
    from pipelines.engines.latentsync.unet import build_unet

    torch.manual_seed(seed)
    unet = build_unet(TINY_UNET).eval()
    vae = AutoencoderKL(**TINY_VAE).eval()
    encoder = WhisperAudioEncoder(EncoderDims(**TINY_AUDIO)).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return {"unet": unet, "vae": vae, "scheduler": make_scheduler(), "audio_encoder": encoder}
