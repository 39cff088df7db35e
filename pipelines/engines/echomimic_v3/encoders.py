"""The Wan2.1 base checkpoints (native names) as stock transformers / diffusers modules, loaded strictly.

* `models_t5_umt5-xxl-enc-bf16` (Wan's own T5 encoder) -> transformers `UMT5EncoderModel` (relative position
  bias per layer, gated tanh-GELU feed-forward, no attention scaling: the same computation).
* `models_clip_open-clip-xlm-roberta-large-vit-huge-14` (the whole CLIP; only `visual.*` is used) ->
  transformers `CLIPVisionModel`; the fused qkv projection is split into q/k/v.
* `Wan2.1_VAE` -> diffusers `AutoencoderKLWan` through diffusers' own converter.

Each function takes the native state dict and returns the module; a key left over or missing is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from pipelines.weights.convert import key_mismatch

# models_t5_umt5-xxl-enc-bf16 (config/config.yaml text_encoder_kwargs)
UMT5_XXL: dict[str, Any] = {"vocab": 256384, "dim": 4096, "dim_ffn": 10240, "num_heads": 64, "num_layers": 24}
# open-clip xlm-roberta-large ViT-H/14 vision tower (upstream clip_xlm_roberta_vit_h_14)
VIT_H_14: dict[str, Any] = {"dim": 1280, "heads": 16, "layers": 32, "image_size": 224, "patch_size": 14}


class EncoderCheckpointError(ValueError):
    """A base-model checkpoint does not have the keys and shapes its loader expects."""


def _strict(what: str, model: torch.nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    mismatch = key_mismatch(sd, {k: tuple(v.shape) for k, v in model.state_dict().items()})
    if mismatch:
        raise EncoderCheckpointError(f"not a {what} checkpoint: {mismatch}")
    model.load_state_dict(sd, strict=True, assign=True)


def _layers(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


# --- UMT5 ----------------------------------------------------------------------------------------------------------

_T5_BLOCK = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}


def umt5_encoder(native: Mapping[str, torch.Tensor], num_heads: int = UMT5_XXL["num_heads"]):
    """transformers UMT5EncoderModel from Wan's T5 encoder weights (widths read from the tensors)."""
    from transformers import UMT5Config, UMT5EncoderModel

    vocab, dim = native["token_embedding.weight"].shape
    layers = _layers(native, r"^blocks\.(\d+)\.")
    ffn = native["blocks.0.ffn.fc1.weight"].shape[0]
    buckets = native["blocks.0.pos_embedding.embedding.weight"].shape[0]
    config = UMT5Config(
        vocab_size=vocab,
        d_model=dim,
        d_kv=dim // num_heads,
        d_ff=ffn,
        num_layers=layers,
        num_heads=num_heads,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
    )
    sd: dict[str, torch.Tensor] = {}
    for key, value in native.items():
        if key == "token_embedding.weight":
            sd["shared.weight"] = sd["encoder.embed_tokens.weight"] = value
        elif key == "norm.weight":
            sd["encoder.final_layer_norm.weight"] = value
        elif m := re.match(r"^blocks\.(\d+)\.(.*)$", key):
            if m.group(2) not in _T5_BLOCK:
                raise EncoderCheckpointError(f"not a Wan T5 encoder checkpoint: unknown key {key}")
            sd[f"encoder.block.{m.group(1)}.{_T5_BLOCK[m.group(2)]}"] = value
        else:
            raise EncoderCheckpointError(f"not a Wan T5 encoder checkpoint: unknown key {key}")
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    _strict("Wan T5 (umt5-xxl) encoder", model, sd)
    return model.eval()


# --- CLIP vision ---------------------------------------------------------------------------------------------------

_CLIP_BLOCK = {
    "norm1.": "layer_norm1.",
    "norm2.": "layer_norm2.",
    "attn.proj.": "self_attn.out_proj.",
    "mlp.0.": "mlp.fc1.",
    "mlp.2.": "mlp.fc2.",
}


def clip_vision_encoder(native: Mapping[str, torch.Tensor], num_heads: int = VIT_H_14["heads"]):
    """transformers CLIPVisionModel from the open-clip XLM-R ViT-H/14 weights (`visual.*`; the rest is ignored)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    visual = {k.removeprefix("visual."): v for k, v in native.items() if k.startswith("visual.")}
    if not visual:
        raise EncoderCheckpointError("not an open-clip CLIP checkpoint: no visual.* keys")
    dim, _, patch, _ = visual["patch_embedding.weight"].shape
    tokens = visual["pos_embedding"].shape[1]
    config = CLIPVisionConfig(
        hidden_size=dim,
        intermediate_size=visual["transformer.0.mlp.0.weight"].shape[0],
        num_hidden_layers=_layers(visual, r"^transformer\.(\d+)\."),
        num_attention_heads=num_heads,
        image_size=int(round((tokens - 1) ** 0.5)) * patch,
        patch_size=patch,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )
    with torch.device("meta"):
        model = CLIPVisionModel(config)
    # transformers 5 puts the tower at the top of CLIPVisionModel; 4.x nested it under `vision_model`
    tower = getattr(model, "vision_model", model)
    p = "vision_model." if tower is not model else ""
    sd: dict[str, torch.Tensor] = {}
    for key, value in visual.items():
        if key == "patch_embedding.weight":
            sd[p + "embeddings.patch_embedding.weight"] = value
        elif key == "cls_embedding":
            sd[p + "embeddings.class_embedding"] = value.reshape(-1)
        elif key == "pos_embedding":
            sd[p + "embeddings.position_embedding.weight"] = value[0]
        elif key.startswith("pre_norm."):
            sd[p + "pre_layrnorm." + key.removeprefix("pre_norm.")] = value
        elif key.startswith("post_norm."):
            sd[p + "post_layernorm." + key.removeprefix("post_norm.")] = value
        elif key == "head":
            continue  # the CLIP projection: EchoMimic reads hidden states, never the projected embedding
        elif m := re.match(r"^transformer\.(\d+)\.(.*)$", key):
            layer, rest = f"{p}encoder.layers.{m.group(1)}.", m.group(2)
            if rest.startswith("attn.to_qkv."):
                kind = rest.removeprefix("attn.to_qkv.")
                for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                    sd[f"{layer}self_attn.{name}_proj.{kind}"] = part
                continue
            new = next((n + rest[len(o) :] for o, n in _CLIP_BLOCK.items() if rest.startswith(o)), None)
            if new is None:
                raise EncoderCheckpointError(f"not an open-clip ViT checkpoint: unknown key visual.{key}")
            sd[layer + new] = value
        else:
            raise EncoderCheckpointError(f"not an open-clip ViT checkpoint: unknown key visual.{key}")
    _strict("open-clip ViT-H/14", model, sd)
    # position_ids is a computed buffer, not a weight: built on meta, it is made here
    tower.embeddings.register_buffer("position_ids", torch.arange(tokens)[None], persistent=False)
    return model.eval()


def clip_native_names(model) -> dict[str, torch.Tensor]:
    """A CLIPVisionModel's weights under open-clip's `visual.*` names (the inverse of `clip_vision_encoder`)."""
    tower = getattr(model, "vision_model", model)
    inverse = {v: k for k, v in _CLIP_BLOCK.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in tower.state_dict().items():
        if key == "embeddings.patch_embedding.weight":
            out["visual.patch_embedding.weight"] = value
        elif key == "embeddings.class_embedding":
            out["visual.cls_embedding"] = value.reshape(1, 1, -1)
        elif key == "embeddings.position_embedding.weight":
            out["visual.pos_embedding"] = value[None]
        elif key.startswith(("pre_layrnorm.", "post_layernorm.")):
            out[
                "visual." + key.replace("pre_layrnorm.", "pre_norm.").replace("post_layernorm.", "post_norm.")
            ] = value
        elif m := re.match(r"^encoder\.layers\.(\d+)\.(.*)$", key):
            layer, rest = f"visual.transformer.{m.group(1)}.", m.group(2)
            if rest.startswith("self_attn.q_proj."):
                kind = rest.removeprefix("self_attn.q_proj.")
                parts = [
                    tower.state_dict()[f"encoder.layers.{m.group(1)}.self_attn.{n}_proj.{kind}"]
                    for n in "qkv"
                ]
                out[f"{layer}attn.to_qkv.{kind}"] = torch.cat(parts)
            elif not rest.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
                new = next(n + rest[len(o) :] for o, n in inverse.items() if rest.startswith(o))
                out[layer + new] = value
    out["visual.head"] = torch.zeros(out["visual.pos_embedding"].shape[-1], 8)  # the unused projection
    return out


def umt5_native_names(model) -> dict[str, torch.Tensor]:
    """A UMT5EncoderModel's weights under Wan's T5 names (the inverse of `umt5_encoder`)."""
    inverse = {v: k for k, v in _T5_BLOCK.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key == "shared.weight":
            out["token_embedding.weight"] = value
        elif key == "encoder.final_layer_norm.weight":
            out["norm.weight"] = value
        elif m := re.match(r"^encoder\.block\.(\d+)\.(.*)$", key):
            out[f"blocks.{m.group(1)}.{inverse[m.group(2)]}"] = value
    return out


# --- VAE -----------------------------------------------------------------------------------------------------------


def wan_vae(native: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None = None):
    """diffusers AutoencoderKLWan from the native Wan2.1 VAE weights (diffusers' own key conversion)."""
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    # the native Wan names (what Wan2.1_VAE.pth holds); a file already in diffusers' names loads as it is
    native_names = "decoder.middle.0.residual.0.gamma" in native
    sd = convert_wan_vae_to_diffusers(dict(native)) if native_names else dict(native)
    with torch.device("meta"):
        model = AutoencoderKLWan(**(config or {}))
    _strict("Wan2.1 VAE", model, sd)
    return model.eval()
