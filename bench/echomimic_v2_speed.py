"""EchoMimic V2 speed and memory through the engine itself, with random weights (speed does not depend on weight
values): seconds per video frame (per stage), peak GPU memory and peak process memory, for clips of several lengths,
to show that memory does not grow with the clip (segments of 72 frames; upstream holds the whole clip).

Full size (the real architecture: denoiser 1.30 G + ReferenceNet 0.82 G parameters, sd-vae-ft-mse, whisper tiny,
768 x 768) on a GPU:
    python bench/echomimic_v2_speed.py --device cuda --seconds 5 30
    python bench/echomimic_v2_speed.py --device cuda --engine echomimic-v2 --seconds 5   # 30 steps, CFG 2.5
A toy size on CPU (the same code path at 64 px with toy widths: plumbing and memory flatness, not speed):
    python bench/echomimic_v2_speed.py --size tiny --seconds 5 30 --steps 2
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from latentsync_speed import SD_VAE, TINY_VAE  # noqa: E402 -- the same sd-vae-ft-mse layout (full and toy)

TINY_BASE = {"block_out_channels": (32, 64, 64, 64), "layers_per_block": 1, "attention_head_dim": 2}
WHISPER_TINY = {"n_mels": 80, "n_ctx": 1500, "n_state": 384, "n_head": 6, "n_layer": 4}
TINY_WHISPER = {"n_mels": 80, "n_ctx": 1500, "n_state": 32, "n_head": 2, "n_layer": 4}


def build(tiny: bool) -> dict:
    from diffusers import AutoencoderKL

    from pipelines.audio_features.encoder import EncoderDims, WhisperAudioEncoder
    from pipelines.engines.echomimic_v2.checkpoints import denoiser_config, reference_config
    from pipelines.engines.echomimic_v2.configs import POSE_ENCODER_CONFIG, REFERENCE_CONFIG
    from pipelines.engines.echomimic_v2.denoiser import build_denoiser
    from pipelines.engines.echomimic_v2.pose_encoder import PoseEncoder
    from pipelines.engines.echomimic_v2.reference_net import build_reference_net

    base = {**REFERENCE_CONFIG, **(TINY_BASE if tiny else {})}
    audio = TINY_WHISPER if tiny else WHISPER_TINY
    pose = dict(POSE_ENCODER_CONFIG, embedding_channels=base["block_out_channels"][0])
    if tiny:
        pose["block_out_channels"] = (4, 8, 8, 8)
    return {
        "reference_net": build_reference_net(reference_config(base)).eval(),
        "denoiser": build_denoiser(denoiser_config(base, audio["n_state"])).eval(),
        "pose_encoder": PoseEncoder(**pose).eval(),
        "vae": AutoencoderKL(**(TINY_VAE if tiny else SD_VAE)).eval(),
        "audio_encoder": WhisperAudioEncoder(EncoderDims(**audio)).eval(),
    }


def speech(seconds: float, fps: float):
    from pipelines.speech.track import Speech

    t = np.arange(int(16000 * seconds)) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return Speech(samples, 16000, fps, round(seconds * fps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="echomimic-v2-acc", choices=("echomimic-v2-acc", "echomimic-v2"))
    ap.add_argument(
        "--size", choices=("full", "tiny"), default=None, help="default: full on CUDA, tiny on CPU"
    )
    ap.add_argument("--seconds", type=float, nargs="+", default=[5.0, 30.0])
    ap.add_argument("--steps", type=int, default=None, help="default: the engine's (6 for -acc, 30)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto", choices=("auto", "float16", "bfloat16", "float32"))
    ap.add_argument("--fps", type=float, default=24.0)
    args = ap.parse_args()

    from skimage.data import astronaut

    from pipelines.cache import DiskArrayCache
    from pipelines.engines.base import RenderSettings
    from pipelines.engines.echomimic_v2.engine import EchoMimicV2Engine
    from pipelines.engines.model.clock import StageClock  # noqa: F401 -- the engine's own timing, read via stats
    from pipelines.expression.track import ExpressionTrack
    from pipelines.spec.engines import engine_settings

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tiny = (args.size or ("full" if device.startswith("cuda") else "tiny")) == "tiny"
    if not device.startswith("cuda"):
        print(
            "no GPU used: CPU figures"
            + (" of a toy-size model (not representative of speed)" if tiny else "")
        )
    torch.manual_seed(0)
    engine = EchoMimicV2Engine(
        args.engine, device=device, components=build(tiny), resolution=64 if tiny else 768, profile=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        import imageio.v3 as iio

        iio.imwrite(Path(tmp) / "persona.png", astronaut())
        opts = {"name": args.engine, "dtype": args.dtype, **({"steps": args.steps} if args.steps else {})}
        settings = RenderSettings(fps=args.fps, size=None, seed=1, engine=engine_settings(opts))
        persona = SimpleNamespace(source=Path(tmp) / "persona.png")
        prepared = engine.prepare(persona, settings, DiskArrayCache(Path(tmp) / "cache"))
        w, h = engine.frame_size(prepared)
        print(f"{args.engine} at {w}x{h}, {'toy' if tiny else 'full'} size, {device}, dtype {args.dtype}")
        peaks = []
        for seconds in args.seconds:
            sp = speech(seconds, args.fps)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.perf_counter()
            n = sum(1 for _ in engine.render(prepared, sp, ExpressionTrack.neutral(sp.n_frames), settings))
            wall = time.perf_counter() - t
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            gpu = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
            peaks.append(gpu if gpu is not None else rss)
            stages = ", ".join(f"{k} {v / n:.3f}" for k, v in engine.stats["stages"].items())
            print(
                f"{seconds:g} s audio = {n} frames in {engine.stats['segments']} segments: {wall / n:.3f} s/frame "
                f"({stages} s/frame)"
            )
            line = f"  peak process RSS so far {rss:.2f} GiB (grew {rss - rss_before / 2**20:+.2f} GiB in this run)"
            if gpu is not None:
                line = f"  peak GPU memory {gpu:.2f} GiB;" + line
            print(line)
        if len(peaks) > 1:
            what = "GPU memory" if device.startswith("cuda") else "process RSS"
            print(f"peak {what}, longest / shortest clip: {peaks[-1] / peaks[0]:.3f}")


if __name__ == "__main__":
    main()
