"""The LatentSync UNet on diffusers' `UNetMotionModel`, with the original's GroupNorm scopes.

The architecture and every weight match diffusers' AnimateDiff UNet after a key rename inside the motion
modules (latentsync.md §3). What does not match is where two kinds of GroupNorm take their statistics:

* resnets and `conv_norm_out`: the original applies a plain GroupNorm to the 5-D (B, C, F, H, W) tensor, so the
  statistics pool over all frames of the chunk; diffusers runs them on (B*F, C, H, W), i.e. per frame.
* motion modules: the original normalises per frame; diffusers' AnimateDiff pools over frames.

`LatentSyncUNet` swaps those norm modules for two small GroupNorm subclasses that reshape around the same
parameters (so names and shapes stay those of the checkpoint), which makes the model float-equivalent to the
original (≈6e-8, latentsync.md §3).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNetMotionModel
from torch import nn

from pipelines.engines.model.motion_norm import FrameGroupNorm

# stage2.yaml / stage2_512.yaml (latentsync.md §1): one architecture for 1.5 and 1.6
UNET_CONFIG: dict[str, Any] = {
    "in_channels": 13,
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
    "motion_max_seq_length": 24,
    "use_motion_mid_block": False,
    "use_linear_projection": False,
}

RESOLUTIONS = {"latentsync-1.5": 256, "latentsync-1.6": 512}
N_KEYS = 1246
N_ELEMENTS = 1_267_944_644
MAX_FRAMES = 24  # temporal positional encoding length: the longest chunk the motion modules accept


class _FrameCount:
    """Frames per chunk of the forward pass in flight, shared by all pooled norms of one model."""

    def __init__(self) -> None:
        self.value = 1


class ChunkGroupNorm(nn.GroupNorm):
    """GroupNorm on (B*F, C, H, W) whose statistics pool over the F frames of each batch element (original resnets)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float, affine: bool, frames: _FrameCount):
        super().__init__(num_groups, num_channels, eps=eps, affine=affine)
        # a plain attribute, not a submodule: the counter is state of the forward pass, not of the weights
        object.__setattr__(self, "_frames", frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self._frames.value
        if n <= 1:
            return super().forward(x)
        bf, c, h, w = x.shape
        y = x.reshape(bf // n, n, c, h, w).transpose(1, 2)
        y = F.group_norm(y, self.num_groups, self.weight, self.bias, self.eps)
        return y.transpose(1, 2).reshape(bf, c, h, w)


def _swap(parent: nn.Module, name: str, new: nn.GroupNorm) -> None:
    old = getattr(parent, name)
    if old.affine:
        new.weight = old.weight
        new.bias = old.bias
    setattr(parent, name, new)


def _fix_norm_scopes(model: UNetMotionModel) -> _FrameCount:
    frames = _FrameCount()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is not nn.GroupNorm:
                continue
            args = (child.num_groups, child.num_channels, child.eps, child.affine)
            if module.__class__.__name__.startswith("ResnetBlock") and name in ("norm1", "norm2"):
                _swap(module, name, ChunkGroupNorm(*args, frames=frames))
            elif module.__class__.__name__ == "AnimateDiffTransformer3D" and name == "norm":
                _swap(module, name, FrameGroupNorm(*args[:2], eps=args[2], affine=args[3]))
    if model.conv_norm_out is not None:
        c = model.conv_norm_out
        _swap(model, "conv_norm_out", ChunkGroupNorm(c.num_groups, c.num_channels, c.eps, c.affine, frames))
    return frames


class LatentSyncUNet(UNetMotionModel):
    """`UNetMotionModel` with the original GroupNorm scopes.

    Call: unet(sample (B, 13, F, h, w), t, encoder_hidden_states (B*F, 50, 384)) -> eps (B, 4, F, h, w).
    """

    @functools.wraps(UNetMotionModel.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "_frames", _fix_norm_scopes(self))

    def set_num_frames(self, n: int) -> None:
        """Frames per batch element for the pooled norms; forward sets it, partial-graph callers (DeepCache) too."""
        if n > self.config.motion_max_seq_length:
            raise ValueError(f"a chunk holds at most {self.config.motion_max_seq_length} frames, got {n}")
        self._frames.value = n

    def forward(
        self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, **kwargs: Any
    ):
        self.set_num_frames(sample.shape[2])
        return super().forward(sample, timestep, encoder_hidden_states, **kwargs)


def build_unet(config: Mapping[str, Any] | None = None, device: str | torch.device = "cpu") -> LatentSyncUNet:
    """The UNet with the reference config (or `config` overrides, e.g. a tiny test size) on `device` ("meta": no memory)."""
    cfg = {**UNET_CONFIG, **(config or {})}
    with torch.device(device):
        return LatentSyncUNet(**cfg)


# --- key mapping: official LatentSync names <-> diffusers UNetMotionModel names -----------------------------------

_MOTION = re.compile(r"^((?:down|up)_blocks\.\d+\.motion_modules\.\d+\.)temporal_transformer\.(.*)$")
_RENAMES = (
    ("attention_blocks.0.pos_encoder.pe", "pos_embed.pe"),
    ("attention_blocks.0.", "attn1."),
    ("attention_blocks.1.", "attn2."),
    ("norms.0.", "norm1."),
    ("norms.1.", "norm2."),
    ("ff_norm.", "norm3."),
)
_DROPPED = "attention_blocks.1.pos_encoder.pe"


def official_to_diffusers(key: str) -> str | None:
    """The diffusers name of an official key; None for the second pos-encoding buffer (the same sinusoid as the first)."""
    m = _MOTION.match(key)
    if not m:
        return key
    prefix, rest = m.groups()
    if rest.endswith(_DROPPED):
        return None
    for old, new in _RENAMES:
        rest = rest.replace(old, new)
    return prefix + rest


def diffusers_to_official(key: str) -> list[str]:
    """The official names of a diffusers key (the shared positional encoding fills both attention blocks)."""
    m = re.match(r"^((?:down|up)_blocks\.\d+\.motion_modules\.\d+\.)(.*)$", key)
    if not m:
        return [key]
    prefix, rest = m.groups()
    if rest.endswith("pos_embed.pe"):
        block = rest[: -len("pos_embed.pe")]
        return [f"{prefix}temporal_transformer.{block}attention_blocks.{i}.pos_encoder.pe" for i in (0, 1)]
    for old, new in _RENAMES[1:]:
        rest = rest.replace(new, old)
    return [f"{prefix}temporal_transformer.{rest}"]


def official_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under the official checkpoint names (what `latentsync_unet.pt` holds)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        for name in diffusers_to_official(k):
            out[name] = v
    return out


@functools.lru_cache(maxsize=2)
def _expected(resolution: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    model = build_unet(device="meta")
    return tuple((k, tuple(v.shape)) for k, v in official_state_dict(model).items())


def expected_unet_keys(resolution: int = 512) -> dict[str, tuple[int, ...]]:
    """Official key -> shape of the LatentSync UNet checkpoint, for the weights converter's check.

    `resolution` (256 for 1.5, 512 for 1.6) is accepted for symmetry with the engines: both versions have the same
    parameter set, so the answer is the same; a checkpoint's version cannot be told from its keys.
    """
    if resolution not in RESOLUTIONS.values():
        raise ValueError(f"LatentSync resolution must be 256 or 512, got {resolution}")
    return dict(_expected(resolution))


class CheckpointMismatchError(ValueError):
    """The state dict is not a LatentSync UNet of this architecture."""


def to_diffusers_state_dict(
    official: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, torch.Tensor]:
    """Rename an official state dict for `LatentSyncUNet`, refusing anything but an exact key/shape match."""
    if any(k.startswith("module.") for k in official):
        official = {k.removeprefix("module."): v for k, v in official.items()}
    if expected is not None:
        from pipelines.weights.convert import key_mismatch

        mismatch = key_mismatch(official, expected)
        if mismatch:
            hint = ""
            if "conv_in.weight" in official and tuple(official["conv_in.weight"].shape[1:2]) != (13,):
                hint = (
                    f"; conv_in takes {official['conv_in.weight'].shape[1]} channels, LatentSync's takes 13"
                )
            raise CheckpointMismatchError(f"not a LatentSync 1.5/1.6 UNet checkpoint: {mismatch}{hint}")
    out: dict[str, torch.Tensor] = {}
    for k, v in official.items():
        new = official_to_diffusers(k)
        if new is None:
            first = k.replace("attention_blocks.1.pos_encoder.pe", "attention_blocks.0.pos_encoder.pe")
            if first in official and not torch.equal(official[first], v):
                raise CheckpointMismatchError(f"{k} differs from {first}: both must hold the same sinusoid")
            continue
        out[new] = v
    return out


def load_official_weights(
    model: LatentSyncUNet, official: Mapping[str, torch.Tensor], assign: bool = False
) -> None:
    """Strictly load an official-named state dict into `model` (shapes and names must match exactly)."""
    expected = {k: tuple(v.shape) for k, v in official_state_dict(model).items()}
    sd = to_diffusers_state_dict(official, expected)
    model.load_state_dict(sd, strict=True, assign=assign)


# safetensors metadata keys that may carry the engine a converted checkpoint was made for
_VERSION_KEYS = ("engine", "engine_id", "talkreel_engine", "source_repo", "repo", "repo_id")


def checkpoint_engine(metadata: Mapping[str, str] | None) -> str | None:
    """The LatentSync version a converted checkpoint declares in its metadata, when it does."""
    for key in _VERSION_KEYS:
        value = (metadata or {}).get(key, "")
        m = re.search(r"latentsync[-_]?(1\.[56])", value, re.IGNORECASE)
        if m:
            return f"latentsync-{m.group(1)}"
    return None


def infer_unet_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """The widths an official-named state dict implies (channels, layers per block, audio width, chunk limit).

    Group counts and head counts leave no trace in the shapes: they stay the reference's (32 groups, 8 heads).
    With the real checkpoints this returns the reference config; smaller test checkpoints get their own widths.
    """
    try:
        blocks = tuple(int(shapes[f"down_blocks.{i}.resnets.0.conv1.weight"][0]) for i in range(4))
        layers = len({k.split(".")[3] for k in shapes if k.startswith("down_blocks.0.resnets.")})
        cross = int(shapes["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"][1])
        pe = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
        return {
            "in_channels": int(shapes["conv_in.weight"][1]),
            "out_channels": int(shapes["conv_out.weight"][0]),
            "block_out_channels": blocks,
            "layers_per_block": layers,
            "cross_attention_dim": cross,
            "motion_max_seq_length": int(shapes[pe][1]),
        }
    except (KeyError, IndexError) as exc:
        raise CheckpointMismatchError(f"not a LatentSync UNet checkpoint (no {exc})") from None


def load_unet_file(
    path: str | Path,
    engine_id: str,
    config: Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> LatentSyncUNet:
    """A LatentSyncUNet from a safetensors checkpoint with official names (or the original `.pt` pickle dict).

    The version is refused when the file declares another one in its metadata; the weights themselves carry
    no version (1.5 and 1.6 have identical keys and shapes).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        declared = checkpoint_engine(metadata)
        if declared is not None and declared != engine_id:
            raise CheckpointMismatchError(
                f"{path} holds {declared} weights; engine {engine_id} needs its own"
            )
        official = load_file(str(path))
    else:
        from pipelines.weights.convert import load_pickle  # one InputError, never unsafe advice

        ckpt = load_pickle(Path(path))
        official = ckpt.get("state_dict", ckpt)
    if config is None:
        config = infer_unet_config({k: tuple(v.shape) for k, v in official.items()})
    model = build_unet(config, device="meta")
    load_official_weights(model, official, assign=True)
    # buffers that are not in the checkpoint would stay on meta; there are none, but check rather than assume
    if any(t.is_meta for t in model.state_dict().values()):
        raise CheckpointMismatchError(f"{path}: some tensors were not loaded")
    model = model.to(device=device)
    if dtype != torch.float32:
        model = model.to(dtype=dtype)
    return model.eval()
