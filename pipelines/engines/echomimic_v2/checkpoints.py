"""Official EchoMimic V2 checkpoints <-> the diffusers-based models, loaded strictly.

Names: the ReferenceNet and pose encoder keep the official names as they are. The denoiser's non-motion keys are
the SD-1.x names diffusers uses too; its motion-module keys are renamed as diffusers' AnimateDiff converter does
(`temporal_transformer.` dropped, attention_blocks.0/1 -> attn1/2, norms.0/1 -> norm1/2, ff_norm -> norm3), and
the two identical sinusoid buffers of a motion module (attention_blocks.{0,1}.pos_encoder.pe) become diffusers'
one `pos_embed.pe`.

Upstream builds the denoiser from the SD base, merges motion_module.pth over it and then loads denoising_unet.pth
with strict=False, silently keeping random values for anything absent or misshapen. Here the union of
motion_module(_acc) and denoising_unet(_acc) — the latter winning, as upstream — must cover the model exactly:
anything missing, unexpected or misshapen is an error naming it. The sinusoid buffers alone may be absent
(they are a formula, not trained).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers.models.embeddings import SinusoidalPositionalEmbedding

from pipelines.engines.echomimic_v2.configs import DENOISER_CONFIG, POSE_ENCODER_CONFIG, REFERENCE_CONFIG
from pipelines.engines.echomimic_v2.denoiser import EchoMimicV2UNet, build_denoiser
from pipelines.engines.echomimic_v2.pose_encoder import PoseEncoder
from pipelines.engines.echomimic_v2.reference_net import ReferenceNet, build_reference_net

Shape = tuple[int, ...]


class CheckpointMismatchError(ValueError):
    """A state dict that is not the EchoMimic V2 model it is loaded into."""


_MOTION = re.compile(
    r"^((?:down_blocks|up_blocks)\.\d+\.motion_modules\.\d+\.|mid_block\.motion_modules\.\d+\.)(.*)$"
)
_RENAMES = (
    ("attention_blocks.0.", "attn1."),
    ("attention_blocks.1.", "attn2."),
    ("norms.0.", "norm1."),
    ("norms.1.", "norm2."),
    ("ff_norm.", "norm3."),
)
_PE = ("attention_blocks.0.pos_encoder.pe", "attention_blocks.1.pos_encoder.pe")


def official_to_diffusers(key: str) -> str | None:
    """The denoiser's diffusers name for an official key; None for the second (duplicate) sinusoid buffer."""
    m = _MOTION.match(key)
    if not m:
        return key
    prefix, rest = m.groups()
    rest = rest.removeprefix("temporal_transformer.")
    if rest.endswith(_PE[1]):
        return None
    if rest.endswith(_PE[0]):
        return prefix + rest[: -len(_PE[0])] + "pos_embed.pe"
    for old, new in _RENAMES:
        rest = rest.replace(old, new)
    return prefix + rest


def diffusers_to_official(key: str) -> list[str]:
    """The official names of a denoiser key (the shared sinusoid fills both attention blocks)."""
    m = _MOTION.match(key)
    if not m:
        return [key]
    prefix, rest = m.groups()
    if rest.endswith("pos_embed.pe"):
        block = rest[: -len("pos_embed.pe")]
        return [f"{prefix}temporal_transformer.{block}{pe}" for pe in _PE]
    for old, new in _RENAMES:
        rest = rest.replace(new, old)
    return [f"{prefix}temporal_transformer.{rest}"]


def official_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's weights under the official checkpoint names (denoiser: motion and non-motion keys together)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        names = diffusers_to_official(k) if isinstance(model, EchoMimicV2UNet) else [k]
        for name in names:
            out[name] = v
    return out


def is_motion_key(key: str) -> bool:
    """Whether an official key belongs in motion_module.pth (the split upstream's trainers save)."""
    return ".motion_modules." in key


@functools.lru_cache(maxsize=1)
def _expected() -> dict[str, dict[str, Shape]]:
    def shapes(model: torch.nn.Module) -> dict[str, Shape]:
        return {k: tuple(v.shape) for k, v in official_state_dict(model).items()}

    return {
        "denoiser": shapes(build_denoiser(device="meta")),
        "reference_net": shapes(build_reference_net(device="meta")),
        "pose_encoder": shapes(_meta_pose_encoder()),
    }


def _meta_pose_encoder() -> PoseEncoder:
    with torch.device("meta"):
        return PoseEncoder(**POSE_ENCODER_CONFIG)


def expected_keys(part: str) -> dict[str, Shape]:
    """Official key -> shape of a full-size model part: "denoiser" (denoising_unet + motion_module merged),
    "reference_net", "pose_encoder"."""
    return dict(_expected()[part])


def expected_checkpoint_keys(role: str) -> dict[str, Shape] | None:
    """What a converted checkpoint of a manifest role must hold exactly; None where only the merged set is fixed
    (denoising_unet and motion_module are checked together when the denoiser is loaded)."""
    if role == "reference_unet":
        return expected_keys("reference_net")
    if role == "pose_encoder":
        return expected_keys("pose_encoder")
    return None


def _check(state: Mapping[str, torch.Tensor], expected: Mapping[str, Shape], what: str, optional=()) -> None:
    from pipelines.weights.convert import key_mismatch

    mismatch = key_mismatch(state, expected, tuple(optional))
    if mismatch:
        raise CheckpointMismatchError(f"not an EchoMimic V2 {what}: {mismatch}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors: safetensors, or an official pickle opened with weights_only=True (plain data only)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from pipelines.weights.convert import load_pickle  # one InputError, never unsafe advice

    obj = load_pickle(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointMismatchError(f"{path}: expected a mapping of parameter names to tensors")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def merge_denoiser(
    denoising_unet: Mapping[str, torch.Tensor], motion_module: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Upstream's merge order: the motion modules first, then denoising_unet over them."""
    return {**motion_module, **denoising_unet}


# --- configs -----------------------------------------------------------------------------------------------------

_UNET_FIELDS = (
    "in_channels",
    "out_channels",
    "block_out_channels",
    "layers_per_block",
    "downsample_padding",
    "mid_block_scale_factor",
    "act_fn",
    "norm_num_groups",
    "norm_eps",
    "use_linear_projection",
)


def read_unet_config(path: str | Path) -> dict[str, Any]:
    """sd-image-variations' unet/config.json (the base both UNets are built from)."""
    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointMismatchError(f"{path}: not a readable UNet config.json ({exc})") from None
    if not isinstance(cfg, dict) or "block_out_channels" not in cfg:
        raise CheckpointMismatchError(f"{path}: a UNet config.json needs block_out_channels")
    return cfg


def reference_config(base: Mapping[str, Any]) -> dict[str, Any]:
    """UNet2DConditionModel kwargs for the ReferenceNet from the base config (as upstream's from_pretrained)."""
    fields = (*_UNET_FIELDS, "flip_sin_to_cos", "freq_shift", "cross_attention_dim", "attention_head_dim")
    cfg = {k: base[k] for k in fields if k in base}
    n = len(cfg.get("block_out_channels", REFERENCE_CONFIG["block_out_channels"]))
    cfg.setdefault(
        "down_block_types",
        base.get("down_block_types", ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)),
    )
    cfg.setdefault(
        "up_block_types", base.get("up_block_types", ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1))
    )
    return {**REFERENCE_CONFIG, **cfg}


def denoiser_config(
    base: Mapping[str, Any], cross_attention_dim: int = 384, max_frames: int = 32
) -> dict[str, Any]:
    """UNetMotionModel kwargs for the denoiser: the base layout with 3-D blocks, audio-wide cross-attention and
    motion modules everywhere (upstream's from_pretrained_2d + inference_v2.yaml)."""
    if not base.get("flip_sin_to_cos", True) or base.get("freq_shift", 0) != 0:
        raise CheckpointMismatchError(
            "the denoiser's time embedding needs flip_sin_to_cos true and freq_shift 0"
        )
    cfg = {k: base[k] for k in _UNET_FIELDS if k in base}
    n = len(cfg.get("block_out_channels", DENOISER_CONFIG["block_out_channels"]))
    down = [t.replace("2D", "Motion").replace("3D", "Motion") for t in base.get("down_block_types", ())]
    up = [t.replace("2D", "Motion").replace("3D", "Motion") for t in base.get("up_block_types", ())]
    heads = base.get("attention_head_dim", 8)
    return {
        **DENOISER_CONFIG,
        **cfg,
        "down_block_types": tuple(down) or DENOISER_CONFIG["down_block_types"][:n],
        "up_block_types": tuple(up) or DENOISER_CONFIG["up_block_types"][:n],
        "num_attention_heads": heads,
        "motion_num_attention_heads": 8,
        "cross_attention_dim": cross_attention_dim,
        "motion_max_seq_length": max_frames,
    }


# --- loading -----------------------------------------------------------------------------------------------------


def _finish(model: torch.nn.Module, what: str, dtype: torch.dtype, device: str | torch.device):
    if any(t.is_meta for t in model.state_dict().values()):
        raise CheckpointMismatchError(f"{what}: some tensors were not loaded")
    model = model.to(device=device)
    if dtype != torch.float32:
        model = model.to(dtype=dtype)
    return model.eval()


def load_denoiser(
    denoising_unet: Mapping[str, torch.Tensor],
    motion_module: Mapping[str, torch.Tensor],
    base_config: Mapping[str, Any],
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> EchoMimicV2UNet:
    """The denoiser from official-named state dicts (strict on the merged set)."""
    official = merge_denoiser(denoising_unet, motion_module)
    probe = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    cross = int(official[probe].shape[1]) if probe in official else 384
    pe_key = next((k for k in official if k.endswith(_PE[0])), None)
    frames = int(official[pe_key].shape[1]) if pe_key else DENOISER_CONFIG["motion_max_seq_length"]
    cfg = denoiser_config(base_config, cross, frames)
    model = build_denoiser(cfg, device="meta")
    expected = {k: tuple(v.shape) for k, v in official_state_dict(model).items()}
    _check(official, expected, "denoiser (denoising_unet + motion_module)", optional=_PE)
    state: dict[str, torch.Tensor] = {}
    for k, v in official.items():
        new = official_to_diffusers(k)
        if new is None:
            first = k.replace(_PE[1], _PE[0])
            if first in official and not torch.equal(official[first], v):
                raise CheckpointMismatchError(f"{k} differs from {first}: both must hold the same sinusoid")
            continue
        state[new] = v
    for k, v in model.state_dict().items():  # absent sinusoid tables are computed, as the model would at init
        if k not in state and k.endswith("pos_embed.pe"):
            state[k] = SinusoidalPositionalEmbedding(v.shape[-1], v.shape[1]).pe
    model.load_state_dict(state, strict=True, assign=True)
    return _finish(model, "denoiser", dtype, device)


def load_reference_net(
    official: Mapping[str, torch.Tensor],
    base_config: Mapping[str, Any],
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> ReferenceNet:
    model = build_reference_net(reference_config(base_config), device="meta")
    _check(
        official, {k: tuple(v.shape) for k, v in model.state_dict().items()}, "ReferenceNet (reference_unet)"
    )
    model.load_state_dict(dict(official), strict=True, assign=True)
    return _finish(model, "ReferenceNet", dtype, device)


def load_pose_encoder(
    official: Mapping[str, torch.Tensor],
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> PoseEncoder:
    """The pose encoder; its widths come from the shapes (conv_in, every second block, conv_out)."""
    try:
        n_blocks = len({k.split(".")[1] for k in official if k.startswith("blocks.")})
        widths = [int(official["conv_in.weight"].shape[0])]
        widths += [int(official[f"blocks.{i}.weight"].shape[0]) for i in range(1, n_blocks, 2)]
        cfg = {
            "embedding_channels": int(official["conv_out.weight"].shape[0]),
            "conditioning_channels": int(official["conv_in.weight"].shape[1]),
            "block_out_channels": tuple(widths),
        }
    except KeyError as exc:
        raise CheckpointMismatchError(f"not an EchoMimic V2 pose encoder (no {exc})") from None
    with torch.device("meta"):
        model = PoseEncoder(**cfg)
    _check(official, {k: tuple(v.shape) for k, v in model.state_dict().items()}, "pose encoder")
    model.load_state_dict(dict(official), strict=True, assign=True)
    return _finish(model, "pose encoder", dtype, device)
