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


# AutoencoderKLWan with Wan2.1's layout (causal 3-D, 8x spatial, 4x temporal) at toy width
TINY_VAE: dict[str, Any] = {
    "base_dim": 8,
    "z_dim": 4,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "latents_mean": [0.1, -0.2, 0.3, 0.0],
    "latents_std": [1.5, 0.5, 2.0, 1.0],
}


def tiny_vae(seed: int = 0):
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(**TINY_VAE).eval()


def tiny_image_encoder(seed: int = 0):
    """CLIP vision tower at toy width with ViT-H/14's token grid (224 px, 14 px patches: 257 tokens)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=TINY_TRANSFORMER["image_dim"],
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=224,
        patch_size=14,
        hidden_act="gelu",  # open-clip ViT-H/14's (transformers' default is quick_gelu)
    )
    return CLIPVisionModel(config).eval()


def tiny_tokenizer():
    """A word-level tokenizer built here (pad 0, </s> 1, unknown 2), appending </s> like UMT5's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = "a person is speaking happy sad calm smiling gently with wide eyes bad hands".split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_text_encoder(seed: int = 0):
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    config = UMT5Config(
        vocab_size=32, d_model=TINY_TRANSFORMER["text_dim"], d_kv=8, d_ff=48, num_layers=2, num_heads=4
    )
    return UMT5EncoderModel(config).eval()
