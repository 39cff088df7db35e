"""Tiny random MuseTalk components from the real classes (diffusers UNet2DConditionModel / AutoencoderKL,
transformers WhisperEncoder), and their files in the hub's layout for the weights path."""

from __future__ import annotations

import json
from pathlib import Path

TINY_WIDTH = 16  # whisper d_model = UNet cross-attention width
TINY_LAYERS = 1  # whisper encoder layers: 2 hidden states per step

TINY_UNET_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": 4,
    "block_out_channels": [8, 16],
    "center_input_sample": False,
    "cross_attention_dim": TINY_WIDTH,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 1,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 4,
    "out_channels": 4,
    "sample_size": 8,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}

TINY_WHISPER_CONFIG = {
    "d_model": TINY_WIDTH,
    "encoder_layers": TINY_LAYERS,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_layers": 1,
    "decoder_attention_heads": 2,
    "decoder_ffn_dim": 32,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "max_target_positions": 8,
    "vocab_size": 64,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 1,
}


def tiny_unet(seed: int = 0):
    import torch

    from pipelines.engines.musetalk.unet import build_unet

    torch.manual_seed(seed)
    return build_unet(TINY_UNET_CONFIG).eval()


def tiny_vae(seed: int = 0):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    ).eval()


def tiny_whisper(seed: int = 0):
    """A WhisperForConditionalGeneration, as openai/whisper-tiny's pytorch_model.bin holds it."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    return WhisperForConditionalGeneration(WhisperConfig(**TINY_WHISPER_CONFIG)).eval()


def whisper_folder(folder: Path, seed: int = 0) -> Path:
    """config.json + preprocessor_config.json + pytorch_model.bin, as on the hub."""
    import torch
    from transformers import WhisperFeatureExtractor

    model = tiny_whisper(seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(str(folder / "config.json"))
    WhisperFeatureExtractor().save_pretrained(str(folder))
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "proj_out.weight"}
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def unet_files(folder: Path, seed: int = 0) -> Path:
    """musetalkV15/musetalk.json + musetalkV15/unet.pth, as upstream ships them."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0.dev0", **TINY_UNET_CONFIG}
    (folder / "musetalk.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    torch.save(tiny_unet(seed).state_dict(), folder / "unet.pth")
    return folder


def write_tiny_weights(weights_dir=None, seed: int = 0) -> Path:
    """Tiny random MuseTalk weights in the hub layouts under `weights_dir` (default: the TALKREEL_WEIGHTS folder),
    converted by pipelines.weights as `talkreel weights download/import` leaves them: TMElyralab/MuseTalk/
    musetalkV15/{unet.pth, musetalk.json}, stabilityai/sd-vae-ft-mse/ (diffusers folder), openai/whisper-tiny/
    (config.json, preprocessor_config.json, pytorch_model.bin). Faces are 32 px (TALKREEL_MUSETALK_RESOLUTION)."""
    from pipelines.weights.manifest import entries
    from pipelines.weights.store import convert_engine, default_weights_dir

    root = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    repos = {w.role: w.repo for w in entries("musetalk-1.5")}
    unet_files(root / repos["unet"] / "musetalkV15", seed)
    tiny_vae(seed + 1).save_pretrained(root / repos["vae"], safe_serialization=True)
    whisper_folder(root / repos["whisper"], seed + 2)
    convert_engine("musetalk-1.5", root)
    return root
