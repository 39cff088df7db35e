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


# A tiny UNet whose norm-group and head counts are the reference's (32 groups, 8 heads): those leave no trace in a
# checkpoint's shapes, so the engine reads only the widths off the file and keeps the reference counts.
TINY_WEIGHTS_UNET: dict[str, Any] = {
    "block_out_channels": (32, 64, 64, 64),
    "layers_per_block": 1,
    "cross_attention_dim": 32,
}
TINY_WEIGHTS_AUDIO = {"n_mels": 80, "n_ctx": 150, "n_state": 32, "n_head": 2, "n_layer": 4}


def write_tiny_weights(engine_id: str = "latentsync-1.6", weights_dir=None, seed: int = 0):
    """Write tiny random LatentSync weights in the hub layouts into `weights_dir` (default: the TALKREEL_WEIGHTS
    folder) and convert them with pipelines.weights, exactly as `talkreel weights import/download` would leave them:
    ByteDance/LatentSync-1.x/latentsync_unet.pt ({"state_dict": ...}), .../whisper/tiny.pt (openai-whisper dict),
    stabilityai/sd-vae-ft-mse/ (diffusers folder). Returns the weights folder.

    Whisper windows are 3 s here (n_ctx 150) instead of 30 s, to keep CPU tests fast; everything else follows the
    real formats. Usage: `write_tiny_weights("latentsync-1.6")` before `talkreel render` with `engine: latentsync-1.6`.
    """
    from pathlib import Path

    import torch
    from diffusers import AutoencoderKL

    from pipelines.engines.latentsync.unet import build_unet, official_state_dict
    from pipelines.weights.manifest import entries
    from pipelines.weights.store import convert_engine, default_weights_dir

    root = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    repos = {w.role: w.repo for w in entries(engine_id)}
    torch.manual_seed(seed)
    unet = build_unet(TINY_WEIGHTS_UNET).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    unet_dir = root / repos["unet"]
    unet_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.clone().contiguous() for k, v in official_state_dict(unet).items()}
    torch.save({"state_dict": state, "global_step": 0}, unet_dir / "latentsync_unet.pt")
    write_tiny_whisper(root / repos["whisper"] / "whisper" / "tiny.pt")
    AutoencoderKL(**TINY_VAE).save_pretrained(root / repos["vae"], safe_serialization=True)
    convert_engine(engine_id, root)
    return root


def write_tiny_whisper(path) -> None:
    """A random whisper encoder of TINY_WEIGHTS_AUDIO's size (3 s windows) saved as openai-whisper's tiny.pt is
    ({"dims", "model_state_dict"}, with a decoder key, as a real checkpoint has, that the converter drops); it draws
    from torch's global generator, like the models written before it."""
    import torch

    from pipelines.audio_features.encoder import EncoderDims, WhisperAudioEncoder

    encoder = WhisperAudioEncoder(EncoderDims(**TINY_WEIGHTS_AUDIO))
    dims = {
        "n_mels": 80, "n_audio_ctx": TINY_WEIGHTS_AUDIO["n_ctx"], "n_audio_state": 32, "n_audio_head": 2,
        "n_audio_layer": 4, "n_vocab": 51865, "n_text_ctx": 448, "n_text_state": 32, "n_text_head": 2,
        "n_text_layer": 1,
    }  # fmt: skip
    state = {f"encoder.{k}": v.clone() for k, v in encoder.state_dict().items()}
    state["decoder.ln.weight"] = torch.ones(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": state}, path)


def one_torch_thread():
    """Tiny models spend more time in thread hand-offs than in arithmetic; one thread is faster and steadier on 2
    shared cores. Use as a fixture body: `with one_torch_thread(): yield`."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def _ctx():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return _ctx()
