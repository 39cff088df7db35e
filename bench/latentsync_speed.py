"""LatentSync speed and memory per stage, with random weights (speed does not depend on weight values).

Prints seconds per video frame for each stage (audio features, preprocessing = align + crop, UNet, VAE, paste-back,
final encode), peak memory, and the UNet's achieved TFLOP/s (FLOPs counted with torch.utils.flop_counter on one
forward of the same shapes; compared with --peak-tflops when given).

Full size (the real architecture: UNet 1.27 G parameters, sd-vae-ft-mse, whisper tiny) on a GPU:
    python bench/latentsync_speed.py --engine latentsync-1.6 --frames 64 --device cuda --dtype bfloat16
A small size on CPU (toy widths, 64 px faces):
    python bench/latentsync_speed.py --size tiny --frames 32 --steps 2
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 256,
}
TINY_UNET = {"block_out_channels": (32, 64, 64, 64), "layers_per_block": 1, "cross_attention_dim": 32}
TINY_VAE = {**SD_VAE, "block_out_channels": (8, 8, 16, 16), "layers_per_block": 1, "norm_num_groups": 4}


class Stopwatch:
    def __init__(self, device: str):
        self.device = device
        self.total: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        self._sync()
        t = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.total[stage] = self.total.get(stage, 0.0) + time.perf_counter() - t

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()


def _timed(watch: Stopwatch, stage: str, fn):
    def wrapper(*args, **kwargs):
        with watch(stage):
            return fn(*args, **kwargs)

    return wrapper


def build(args):
    from diffusers import AutoencoderKL

    from pipelines.audio_features.encoder import EncoderDims, WhisperAudioEncoder
    from pipelines.engines.latentsync.pipeline import LatentSyncPipeline, make_scheduler
    from pipelines.engines.latentsync.unet import build_unet

    dtype = getattr(torch, args.dtype)
    tiny = args.size == "tiny"
    with torch.device(args.device):
        unet = build_unet(TINY_UNET if tiny else None).eval()
        vae = AutoencoderKL(**(TINY_VAE if tiny else SD_VAE)).eval()
        encoder = WhisperAudioEncoder(EncoderDims(n_state=32, n_head=2) if tiny else EncoderDims()).eval()
    if dtype != torch.float32:
        for m in (unet, vae, encoder):
            m.to(dtype=dtype)
    return LatentSyncPipeline(unet=unet, vae=vae, scheduler=make_scheduler(), audio_encoder=encoder)


def unet_flops(config: dict, frames: int, res: int, cfg: bool) -> float:
    """FLOPs of one UNet forward over a chunk, counted on the meta device (no memory, no arithmetic)."""
    from torch.utils.flop_counter import FlopCounterMode

    from pipelines.engines.latentsync.unet import build_unet

    unet = build_unet(config, device="meta").eval()
    side = res // 8
    b = 2 if cfg else 1
    x = torch.randn(b, 13, frames, side, side, device="meta")
    audio = torch.randn(b * frames, 50, unet.config.cross_attention_dim, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor(501, device="meta"), encoder_hidden_states=audio)
    return float(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="latentsync-1.6", choices=["latentsync-1.5", "latentsync-1.6"])
    ap.add_argument("--size", default="full", choices=["full", "tiny"])
    ap.add_argument("--resolution", type=int, default=None, help="face size (default: 256/512, tiny: 64)")
    ap.add_argument("--frames", type=int, default=32, help="clip length in video frames (25 fps)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=1.5)
    ap.add_argument("--deep-cache", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--frame-size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"))
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak, for the ratio")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    from pipelines.engines.latentsync.unet import RESOLUTIONS

    res = args.resolution or (64 if args.size == "tiny" else RESOLUTIONS[args.engine])
    n = args.frames
    watch = Stopwatch(args.device)

    t0 = time.perf_counter()
    pipe = build(args)
    build_s = time.perf_counter() - t0
    pipe.unet.forward = _timed(watch, "unet", pipe.unet.forward)
    pipe._unet_shallow = _timed(watch, "unet", pipe._unet_shallow)
    pipe.vae.encode = _timed(watch, "vae", pipe.vae.encode)
    pipe.vae.decode = _timed(watch, "vae", pipe.vae.decode)

    # a synthetic frame with a face at a known place stands in for the decoded source video
    import cv2
    from skimage.data import astronaut

    from pipelines.audio_features.features import SpeechFeatures
    from pipelines.face.align import alignment_matrices, latentsync_anchors, latentsync_template, warp_to_crop
    from pipelines.face.blend import paste_back
    from pipelines.face.landmarks import detect_faces
    from pipelines.face.mask import latentsync_mask

    w, h = args.frame_size
    canvas = np.full((h, w, 3), 120, np.uint8)
    face = cv2.resize(astronaut(), (min(w, h), min(w, h)))
    canvas[: face.shape[0], (w - face.shape[1]) // 2 : (w - face.shape[1]) // 2 + face.shape[1]] = face
    with watch("face landmarks (prepare)"):  # one frame, MediaPipe start-up included; prepare caches tracks
        points = detect_faces(canvas)[0].points
    template = latentsync_template(res)
    matrix = alignment_matrices(latentsync_anchors(points[None]), template)[0][0]
    keep = latentsync_mask(res)

    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(int(16000 * n / 25))).astype(np.float32)
    with watch("features"):
        feats = SpeechFeatures(pipe.audio_encoder, speech)
    noise = pipe.prepare_noise(res, torch.Generator().manual_seed(1247))
    out_frames = []
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for c in range(0, n, 16):
        idx = list(range(c, min(c + 16, n)))
        with watch("features"):
            windows = feats.frame_windows(idx)
        with watch("preprocessing"):
            frames = [canvas.copy() for _ in idx]
            crops = np.stack([warp_to_crop(f, matrix, template) for f in frames])
        faces = pipe(
            crops,
            windows,
            keep,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=torch.Generator().manual_seed(c),
            latents=noise,
            deep_cache_interval=3 if args.deep_cache else None,
        )
        with watch("paste-back"):
            out_frames.extend(
                paste_back(f, x, matrix, template.crop_size) for f, x in zip(frames, faces, strict=True)
            )
        if len(out_frames) >= 64:
            out_frames = out_frames[-16:]  # keep memory flat; the encode below uses what is left
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp, watch("encode"):
        writer = imageio_ffmpeg.write_frames(
            str(Path(tmp) / "o.mp4"), (w, h), fps=25, codec="libx264", pix_fmt_out="yuv420p", quality=None,
            output_params=["-crf", "18", "-preset", "medium"],
        )  # fmt: skip
        writer.send(None)
        for _ in range(n):
            writer.send(out_frames[0])
        writer.close()

    cfg = args.guidance > 1
    flops = unet_flops(TINY_UNET if args.size == "tiny" else None, 16, res, cfg)
    full_forwards = sum(
        1 for _c in range(0, n, 16) for j in range(args.steps) if not args.deep_cache or j % 3 == 0
    )  # chunk-level full forwards (the flop figure is for 16-frame chunks; the last chunk may be shorter)
    unet_s = watch.total.get("unet", 0.0)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"LatentSync {args.engine} size={args.size} face={res}px frames={n} steps={args.steps} "
        f"guidance={args.guidance} deep_cache={args.deep_cache} dtype={args.dtype} device={device_name} "
        f"threads={torch.get_num_threads()}"
    )
    print(f"model build (random weights): {build_s:.1f} s")
    for stage in (
        "features",
        "preprocessing",
        "unet",
        "vae",
        "paste-back",
        "encode",
        "face landmarks (prepare)",
    ):
        total = watch.total.get(stage, 0.0)
        per = total if stage.startswith("face landmarks") else total / n
        unit = "s per source frame" if stage.startswith("face landmarks") else "s per video frame"
        print(f"  {stage:30s} {per:9.4f} {unit}")
    total = sum(v for k, v in watch.total.items() if not k.startswith("face landmarks"))
    print(f"  {'total':30s} {total / n:9.4f} s per video frame ({n / total:.2f} frames/s)")
    if args.device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"peak process RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    achieved = flops * full_forwards / max(unet_s, 1e-9) / 1e12
    line = f"UNet: {flops / 16 / 1e12:.4f} TFLOP per frame per forward (CFG batch incl.), achieved {achieved:.3f} TFLOP/s"
    if args.deep_cache:
        line += " (full forwards only counted; cached steps add a little)"
    if args.peak_tflops:
        line += f" = {100 * achieved / args.peak_tflops:.1f}% of {args.peak_tflops:g}"
    print(line)


if __name__ == "__main__":
    main()
