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


def tiny_image_encoder(seed: int = 0, heads: int = 2):
    """CLIP vision tower at toy width with ViT-H/14's token grid (224 px, 14 px patches: 257 tokens). The weights
    loader reads the head count as width // 80 (ViT-H's head width): files for it are written with heads=1."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=TINY_TRANSFORMER["image_dim"],
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=heads,
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


# the e2e weights: the real layout (36 input channels, 16 latent channels, Wan VAE stages) at toy width
TINY_WAN_CONFIG = {
    "_class_name": "WanModel",
    "model_type": "i2v",
    "dim": 24,
    "num_heads": 2,
    "in_dim": 36,
    "out_dim": 16,
    "text_dim": TINY_TRANSFORMER["text_dim"],
    "freq_dim": 16,
    "ffn_dim": 40,
    "num_layers": 2,
    "eps": 1e-6,
    # not in Wan's own config.json (the real widths are the defaults): the toy encoders' widths
    "image_dim": TINY_TRANSFORMER["image_dim"],
    "audio_dim": 16,
    "audio_layers": 3,
    "audio_hidden": 16,
    "audio_tokens": 4,
}


def write_tiny_weights(engine_id: str, weights_dir=None, seed: int = 0):
    """Tiny random EchoMimic V3 weights in the hub layouts of the manifest, converted by pipelines.weights as
    `talkreel weights import/download` leaves them: the transformer safetensors with native Wan names, Wan's
    config.json, the Wan T5 and open-clip pickles with their native names, the umt5 tokenizer folder, a wav2vec2
    folder. The VAE pickle holds diffusers' names (the loader takes both; the native ones are checked against
    upstream outside the tests). Returns the weights folder."""
    import json
    import tempfile
    from pathlib import Path

    import torch
    from diffusers import AutoencoderKLWan
    from safetensors.torch import save_file
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from pipelines.engines.echomimic_v3.encoders import clip_native_names, umt5_native_names
    from pipelines.engines.echomimic_v3.engine import wan_config
    from pipelines.engines.echomimic_v3.transformer import build_transformer, native_state_dict
    from pipelines.weights.manifest import entries
    from pipelines.weights.store import convert_engine, default_weights_dir

    variant = "flash" if engine_id.endswith("flash") else "preview"
    root = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    by_role = {w.role: w for w in entries(engine_id)}

    def dest(role: str, rel: str | None = None) -> Path:
        w = by_role[role]
        path = root / w.repo / (rel or w.patterns[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def contiguous(sd):
        return {k: v.detach().clone().contiguous() for k, v in sd.items()}

    torch.manual_seed(seed)
    transformer = build_transformer(variant, wan_config(TINY_WAN_CONFIG))
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    save_file(contiguous(native_state_dict(transformer)), str(dest("transformer")))
    dest("transformer_config").write_text(json.dumps(TINY_WAN_CONFIG))
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    torch.save(contiguous(vae.state_dict()), dest("vae"))
    torch.save(contiguous(umt5_native_names(tiny_text_encoder(seed))), dest("text_encoder"))
    tokenizer_dir = dest("text_tokenizer", "google/umt5-xxl/x").parent
    tiny_tokenizer().save_pretrained(str(tokenizer_dir))
    torch.save(contiguous(clip_native_names(tiny_image_encoder(seed, heads=1))), dest("image_encoder"))
    dest("image_tokenizer", "xlm-roberta-large/tokenizer.json").write_text('{"model": "unused"}')
    audio_cfg = Wav2Vec2Config(
        hidden_size=TINY_WAN_CONFIG["audio_dim"],
        num_hidden_layers=TINY_WAN_CONFIG["audio_layers"],
        num_attention_heads=2,
        intermediate_size=24,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    audio = Wav2Vec2Model(audio_cfg)
    folder = dest("audio_encoder", "config.json").parent
    with tempfile.TemporaryDirectory() as tmp:
        audio.save_pretrained(tmp)
        (folder / "config.json").write_text((Path(tmp) / "config.json").read_text())
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True).save_pretrained(
        str(folder)
    )
    if "pytorch_model.bin" in by_role["audio_encoder"].patterns:
        torch.save(contiguous(audio.state_dict()), folder / "pytorch_model.bin")
    else:
        save_file(contiguous(audio.state_dict()), str(folder / "model.safetensors"))
    convert_engine(engine_id, root)
    return root
