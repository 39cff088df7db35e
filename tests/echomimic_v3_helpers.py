"""Tiny EchoMimic V3 components for fast CPU tests: the real classes at toy width."""

from __future__ import annotations

from typing import Any

# same block structure as Wan2.1-Fun-1.3B-InP (image tokens, qk norms, affine cross-attention norm), toy width;
# in 12 = 4 noise + 4 masked-video latent + 4 mask channels, as 36 = 16 + 16 + 4 at full size
TINY_TRANSFORMER: dict[str, Any] = {
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 12,
    "out_channels": 4,
    "text_dim": 32,
    "freq_dim": 16,
    "ffn_dim": 40,
    "num_layers": 2,
    "image_dim": 20,
    "added_kv_proj_dim": 24,
    "audio_dim": 8,
    "audio_layers": 3,
    "audio_hidden": 16,
    "audio_tokens": 4,
}


def tiny_transformer(variant: str, seed: int = 0):
    """A tiny transformer whose every weight (norms, zero-initialised audio projections too) is random."""
    import torch

    from pipelines.engines.echomimic_v3.transformer import build_transformer

    torch.manual_seed(seed)
    model = build_transformer(variant, TINY_TRANSFORMER).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            # norm scales around 1, everything else around 0
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model
