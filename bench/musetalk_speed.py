"""MuseTalk 1.5 speed and memory per stage through the engine itself, with random weights (speed does not depend
on weight values).

A synthetic persona (the astronaut portrait on a W x H canvas: a short video with the face drifting, or a still)
is prepared once and rendered with `MuseTalkEngine.render` in profiling mode (stages timed with device
synchronisation), the frames piped into ffmpeg as `talkreel render` does. Prints seconds per video frame for each
stage (preview frames = the persona moved by the preview engine; crop = mesh, box, mask and the 256 px crops; audio
windows; VAE encode; UNet; VAE decode; paste-back; final encode), the wall clock against real time at 25 fps, peak
memory, and how many VAE encodes the reference-latent cache saved.

Full size (UNet 850 M parameters from musetalk.json, sd-vae-ft-mse, whisper-tiny) on a GPU:
    python bench/musetalk_speed.py --device cuda --frames 250 --batch-size 16
A small size on CPU (toy widths, 32 px faces):
    python bench/musetalk_speed.py --size tiny --frames 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_report import print_latent_cache, print_peak_memory, print_stages, render_and_encode  # noqa: E402
from latentsync_speed import SD_VAE, TINY_VAE, write_persona  # noqa: E402

TINY_UNET = {
    "block_out_channels": [32, 64, 64, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "norm_num_groups": 32,
}
WHISPER_TINY = {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536}
WHISPER_TOY = {"d_model": 32, "encoder_layers": 4, "encoder_attention_heads": 2, "encoder_ffn_dim": 64}


def build(tiny: bool) -> dict:
    from diffusers import AutoencoderKL
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from pipelines.engines.musetalk import audio as mt_audio
    from pipelines.engines.musetalk.unet import UNET_CONFIG, build_unet

    config = WhisperConfig(
        **(WHISPER_TOY if tiny else WHISPER_TINY), num_mel_bins=80, max_source_positions=1500
    )
    config._attn_implementation = "eager"
    return {
        "unet": build_unet({**UNET_CONFIG, **TINY_UNET} if tiny else UNET_CONFIG).eval(),
        "vae": AutoencoderKL(**(TINY_VAE if tiny else SD_VAE)).eval(),
        "whisper": WhisperEncoder(config).eval(),
        "feature_extractor": mt_audio.feature_extractor(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="full", choices=["full", "tiny"])
    ap.add_argument("--frames", type=int, default=64, help="clip length in video frames (25 fps)")
    ap.add_argument("--persona", default="video", choices=["video", "still"])
    ap.add_argument("--source-frames", type=int, default=24, help="frames of the persona video (looped)")
    ap.add_argument("--batch-size", type=int, default=8, help="frames per UNet call")
    ap.add_argument("--no-prefetch", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--frame-size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")

    from pipelines.cache import DiskArrayCache
    from pipelines.engines.base import RenderSettings
    from pipelines.engines.musetalk.engine import MuseTalkEngine
    from pipelines.spec.engines import engine_settings
    from pipelines.speech.track import Speech

    tiny = args.size == "tiny"
    res = 32 if tiny else 256
    n = args.frames
    w, h = args.frame_size
    t0 = time.perf_counter()
    engine = MuseTalkEngine(
        device=args.device,
        components=build(tiny),
        resolution=res,
        batch_size=args.batch_size,
        prefetch=not args.no_prefetch,
        profile=True,
    )
    build_s = time.perf_counter() - t0
    opts = engine_settings({"name": "musetalk-1.5", "batch_size": args.batch_size, "dtype": args.dtype})
    settings = RenderSettings(fps=25.0, size=None, seed=1247, engine=opts)
    rng = np.random.default_rng(0)
    speech = Speech((0.1 * rng.standard_normal(int(16000 * n / 25))).astype(np.float32), 16000, 25.0, n)

    with tempfile.TemporaryDirectory() as tmp:
        source = write_persona(Path(tmp), args.persona, w, h, args.source_frames)
        t0 = time.perf_counter()
        prepared = engine.prepare(SimpleNamespace(source=source), settings, DiskArrayCache(tmp))
        prepare_s = time.perf_counter() - t0
        ow, oh = engine.frame_size(prepared)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        encode_s, wall_s = render_and_encode(engine, prepared, speech, settings, Path(tmp) / "o.mp4")

    stats = engine.stats
    stages = dict(stats["stages"])
    stages["encode"] = encode_s
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"MuseTalk 1.5 size={args.size} face={res}px frames={n} frame={ow}x{oh} persona={args.persona} "
        f"batch={args.batch_size} prefetch={not args.no_prefetch} dtype={args.dtype} device={device_name} "
        f"threads={torch.get_num_threads()}"
    )
    print(f"model build (random weights): {build_s:.1f} s; prepare (persona, once): {prepare_s:.2f} s")
    rows = [
        ("preview frames (motion)", "preview"),
        ("crop (mesh, box, mask, crops)", "crop"),
        ("audio windows", "audio"),
        ("vae encode", "vae-encode"),
        ("unet", "unet"),
        ("vae decode", "vae-decode"),
        ("paste-back", "paste-back"),
        ("encode (libx264)", "encode"),
    ]
    print_stages(stages, rows, n, wall_s)
    worker = sum(stages.get(k, 0.0) for k in ("preview", "crop", "audio"))
    if not args.no_prefetch:
        print(
            f"prefetch: chunk preparation {worker:.2f} s on the background thread, the models waited "
            f"{stats['prefetch_wait_s']:.2f} s for it"
        )
    print_latent_cache(stats["reference_latents"])
    print_peak_memory(args.device)


if __name__ == "__main__":
    main()
