"""Tiny EchoMimic V2 components: the real classes with the real block layout at toy width, random weights."""

from __future__ import annotations

from typing import Any

from latentsync_helpers import (
    TINY_VAE,  # the same toy sd-vae layout (factor 8)
    write_tiny_whisper,
)

# a sd-image-variations-style unet/config.json at toy width (one layer per block, 8 norm groups, 2 heads)
TINY_BASE: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 2,
    "block_out_channels": [16, 32, 32, 32],
    "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 1,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 8,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "use_linear_projection": False,
}
TINY_AUDIO_WIDTH = 32
TINY_POSE = {"embedding_channels": 16, "conditioning_channels": 3, "block_out_channels": (4, 8, 8, 8)}


def perturbed(model, seed: int = 0, amount: float = 0.05):
    """Random offsets on every weight, so zero-initialised layers (motion proj_out, pose conv_out) act too."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(amount * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


def tiny_models(seed: int = 0) -> dict[str, Any]:
    """reference_net, denoiser, pose_encoder at toy size."""
    import torch

    from pipelines.engines.echomimic_v2.checkpoints import denoiser_config, reference_config
    from pipelines.engines.echomimic_v2.denoiser import build_denoiser
    from pipelines.engines.echomimic_v2.pose_encoder import PoseEncoder
    from pipelines.engines.echomimic_v2.reference_net import build_reference_net

    torch.manual_seed(seed)
    return {
        "reference_net": perturbed(build_reference_net(reference_config(TINY_BASE)), seed),
        "denoiser": perturbed(build_denoiser(denoiser_config(TINY_BASE, TINY_AUDIO_WIDTH)), seed + 1),
        "pose_encoder": perturbed(PoseEncoder(**TINY_POSE), seed + 2),
    }


def tiny_pipeline(seed: int = 0):
    """EchoMimicV2Pipeline from the tiny models, a tiny VAE and upstream's scheduler."""
    import torch
    from diffusers import AutoencoderKL

    from pipelines.engines.echomimic_v2.pipeline import EchoMimicV2Pipeline
    from pipelines.engines.echomimic_v2.sampling import make_scheduler

    models = tiny_models(seed)
    torch.manual_seed(seed)
    return EchoMimicV2Pipeline(vae=AutoencoderKL(**TINY_VAE).eval(), scheduler=make_scheduler(), **models)


def write_tiny_weights(engine_id: str = "echomimic-v2-acc", weights_dir=None, seed: int = 0):
    """Tiny random EchoMimic V2 weights in the hub layouts, converted by pipelines.weights as `talkreel weights
    import/download` would leave them: BadToBest/EchoMimicV2/{denoising_unet,motion_module}[_acc].pth (the
    denoiser's non-motion / motion keys, official names), reference_unet.pth, pose_encoder.pth (flat dicts),
    lambdalabs/sd-image-variations-diffusers/unet/config.json, the VAE folder and whisper tiny.pt (3 s windows).
    Returns the weights folder."""
    import json
    from pathlib import Path

    import torch
    from diffusers import AutoencoderKL

    from pipelines.engines.echomimic_v2 import checkpoints as ck
    from pipelines.weights.manifest import entries
    from pipelines.weights.store import convert_engine, default_weights_dir

    root = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    files = {w.role: (w.repo, w.patterns[0]) for w in entries(engine_id)}

    def path(role: str) -> Path:
        repo, name = files[role]
        p = root / repo / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    models = tiny_models(seed)
    official = {k: v.clone().contiguous() for k, v in ck.official_state_dict(models["denoiser"]).items()}
    torch.save({k: v for k, v in official.items() if not ck.is_motion_key(k)}, path("denoising_unet"))
    torch.save({k: v for k, v in official.items() if ck.is_motion_key(k)}, path("motion_module"))
    torch.save(
        {k: v.clone() for k, v in models["reference_net"].state_dict().items()}, path("reference_unet")
    )
    torch.save({k: v.clone() for k, v in models["pose_encoder"].state_dict().items()}, path("pose_encoder"))
    path("reference_unet_config").write_text(json.dumps(TINY_BASE))
    write_tiny_whisper(path("whisper"))
    vae_repo = files["vae"][0]
    AutoencoderKL(**TINY_VAE).save_pretrained(root / vae_repo, safe_serialization=True)
    convert_engine(engine_id, root)
    return root
