"""MuseTalk's denoiser: a stock diffusers `UNet2DConditionModel` built from upstream's `musetalkV15/musetalk.json`.

Upstream (musetalk/models/unet.py) constructs `UNet2DConditionModel(**json.load(musetalk.json))` and loads
`unet.pth` strictly, with no renames: its keys are diffusers' own (checked against the full-size key set in
tests/test_musetalk_model.py), so the key mapping here is the identity and loading is strict. The sinusoidal
`PositionalEncoding` (d_model 384) is computed in code, not stored in `unet.pth`: `audio_positions`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# musetalkV15/musetalk.json (TMElyralab/MuseTalk on the hub): the SD-1.x layout with 8 input channels (masked crop
# latent + reference latent) and 384-wide cross-attention (whisper-tiny). Used when no config file is given.
UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}


def read_config(path: str | Path) -> dict[str, Any]:
    """A musetalk.json as constructor arguments (diffusers' bookkeeping keys `_class_name` etc. dropped)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def build_unet(config: Mapping[str, Any] | None = None):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**dict(config or UNET_CONFIG))


def expected_unet_keys(config: Mapping[str, Any] | None = None) -> dict[str, tuple[int, ...]]:
    """key -> shape of the UNet for `config` (default: musetalk.json's), built on the meta device (no memory)."""
    with torch.device("meta"):
        unet = build_unet(config)
    return {k: tuple(v.shape) for k, v in unet.state_dict().items()}


def map_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """upstream unet.pth keys -> diffusers keys: the identity (upstream saves diffusers' own state dict); a
    `module.` prefix left by DataParallel training is the one wrapper removed."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def load_state_strict(unet, state: Mapping[str, torch.Tensor], source: str = "unet") -> None:
    """Load every tensor or fail naming what is missing, unexpected or of another shape."""
    from pipelines.weights.convert import key_mismatch

    state = map_keys(state)
    mismatch = key_mismatch(state, {k: tuple(v.shape) for k, v in unet.state_dict().items()})
    if mismatch:
        raise ValueError(f"{source}: not a MuseTalk UNet for this config: {mismatch}")
    unet.load_state_dict(state, strict=True)


def load_unet(weights: str | Path, config: str | Path | None = None):
    """The UNet from a safetensors file (talkreel's conversion of unet.pth) or the .pth itself (weights_only)."""
    weights = Path(weights)
    unet = build_unet(read_config(config) if config else None)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        from pipelines.weights.convert import load_pickle  # one InputError, never unsafe advice

        state = load_pickle(Path(weights))
    load_state_strict(unet, state, str(weights))
    return unet.eval().requires_grad_(False)


def audio_positions(length: int, width: int) -> torch.Tensor:
    """(length, width) upstream's PositionalEncoding table: sin on even channels, cos on odd ones (interleaved,
    unlike whisper's own embedding), added to the 50 audio tokens of each frame before the UNet."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(length, width)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe
