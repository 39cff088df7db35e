"""LatentSync speed and memory per stage through the engine itself, with random weights (speed does not depend on
weight values).

A synthetic persona (the astronaut portrait on a W x H canvas: a short video with the face drifting, or a still)
is prepared once (MediaPipe face track) and rendered with `LatentSyncEngine.render` in profiling mode (stages are
timed with device synchronisation). Prints seconds per video frame for each stage (audio features, preprocessing =
source decode + expression warps + upload + crops on the device, UNet, VAE, module offload in low-VRAM mode,
paste-back incl. the download, final encode), peak memory, the UNet's achieved TFLOP/s (FLOPs counted with
torch.utils.flop_counter on one forward of the same shapes; compared with --peak-tflops when given), how much of
the chunk preparation the prefetch thread hid behind the pipeline, and how many VAE encodes the reference-latent
cache saved. --compare also times the batched torch crop / paste-back against the per-frame OpenCV path on the same
frames (same process, at the engine's official face size).

Full size (the real architecture: UNet 1.27 G parameters, sd-vae-ft-mse, whisper tiny) on a GPU:
    python bench/latentsync_speed.py --engine latentsync-1.6 --frames 64 --device cuda --dtype bfloat16 --compare
A small size on CPU (toy widths, 64 px faces):
    python bench/latentsync_speed.py --size tiny --frames 32 --steps 2 --compare
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


def build(tiny: bool) -> dict:
    from diffusers import AutoencoderKL

    from pipelines.audio_features.encoder import EncoderDims, WhisperAudioEncoder
    from pipelines.engines.latentsync.pipeline import make_scheduler
    from pipelines.engines.latentsync.unet import build_unet

    return {
        "unet": build_unet(TINY_UNET if tiny else None).eval(),
        "vae": AutoencoderKL(**(TINY_VAE if tiny else SD_VAE)).eval(),
        "audio_encoder": WhisperAudioEncoder(
            EncoderDims(n_state=32, n_head=2) if tiny else EncoderDims()
        ).eval(),
        "scheduler": make_scheduler(),
    }


def unet_flops(config: dict | None, frames: int, res: int, cfg: bool) -> float:
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


def scene(w: int, h: int, n: int) -> list[np.ndarray]:
    """n frames of the portrait on a grey W x H canvas, drifting one pixel right and down every other frame."""
    import cv2
    from skimage.data import astronaut

    side = min(w, h)
    face = cv2.resize(astronaut(), (side, side))
    frames = []
    for i in range(n):
        canvas = np.full((h, w, 3), 120, np.uint8)
        x0 = (w - side) // 2 + i // 2
        canvas[i // 2 : side, x0 : x0 + side] = face[: side - i // 2, : w - x0]
        frames.append(canvas)
    return frames


def write_persona(folder: Path, kind: str, w: int, h: int, n: int) -> Path:
    frames = scene(w, h, n if kind == "video" else 1)
    if kind == "still":
        import imageio.v3 as iio

        path = folder / "persona.png"
        iio.imwrite(path, frames[0])
        return path
    import av

    path = folder / "persona.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264rgb", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "rgb24"
        stream.options = {"qp": "0"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def compare(frames: list[np.ndarray], points: np.ndarray, res: int, device: str, repeats: int = 3) -> None:
    """Per-frame OpenCV crop + paste-back against face.batch_warp on the same frames (upload/download included)."""
    from pipelines.face.align import alignment_matrices, latentsync_anchors, latentsync_template, warp_to_crop
    from pipelines.face.batch_warp import FaceWarp
    from pipelines.face.blend import paste_back
    from pipelines.face.mask import latentsync_mask

    t = latentsync_template(res)
    m = alignment_matrices(latentsync_anchors(points[None]), t)[0][0]
    mats = np.stack([m + np.array([[0, 0, 0.5 * i], [0, 0, 0.25 * i]]) for i in range(len(frames))])
    n = len(frames)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    keep = latentsync_mask(res)

    def regenerated(crop):  # stands in for the model: the crop outside the mask, darker inside
        k = keep[..., None]
        return np.floor(crop * k + np.clip(crop - 30.0, 0, 255) * (1 - k)).astype(np.uint8)

    def old():
        crops = [warp_to_crop(f, mm, t) for f, mm in zip(frames, mats, strict=True)]
        faces = [regenerated(c.astype(np.float32)) for c in crops]
        out = [paste_back(f, c, mm, t.crop_size) for f, c, mm in zip(frames, faces, mats, strict=True)]
        return crops, out

    warp = FaceWarp(t.crop_size, res, device)
    hw = frames[0].shape[:2]

    def new():
        box = warp.box(mats, hw)
        x0, y0, x1, y1 = box
        images = np.stack(frames)
        host = torch.from_numpy(np.ascontiguousarray(images[:, y0:y1, x0:x1]))
        if device.startswith("cuda"):
            host = host.pin_memory()
        region = host.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
        crops = warp.crops(region, box, hw, mats)
        keep_t = torch.as_tensor(keep, device=device)
        faces = (crops * keep_t + (crops - 30).clamp(0, 255) * (1 - keep_t)).floor()
        pasted = warp.paste(region, box, faces, mats, np.ones(n))
        images[:, y0:y1, x0:x1] = pasted.byte().permute(0, 2, 3, 1).cpu().numpy()
        return crops, images

    new()  # warm-up (allocations, kernels)
    timings = {}
    for name, fn in (("per-frame OpenCV (CPU)", old), (f"batched torch ({device})", new)):
        best = float("inf")
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            result = fn()
            sync()
            best = min(best, time.perf_counter() - t0)
        timings[name] = (best, result)
    (old_s, (old_crops, old_out)), (new_s, (new_crops, new_out)) = timings.values()
    crop_diff = np.abs(new_crops.permute(0, 2, 3, 1).cpu().numpy() - np.stack(old_crops))
    out_diff = np.abs(new_out.astype(np.int16) - np.stack(old_out))
    print(f"compare crop + paste-back, {n} frames of {hw[1]}x{hw[0]}, face {res} px (best of {repeats}):")
    for name, (s, _) in timings.items():
        print(f"  {name:30s} {s / n:9.4f} s per frame")
    print(f"  ratio OpenCV / batched torch    {old_s / new_s:9.2f}x")
    print(
        f"  difference: crops max {crop_diff.max():.0f} mean {crop_diff.mean():.3f} levels; "
        f"pasted frames max {out_diff.max()} mean {out_diff.mean():.4f} levels"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="latentsync-1.6", choices=["latentsync-1.5", "latentsync-1.6"])
    ap.add_argument("--size", default="full", choices=["full", "tiny"])
    ap.add_argument("--resolution", type=int, default=None, help="face size (default: 256/512, tiny: 64)")
    ap.add_argument("--frames", type=int, default=32, help="clip length in video frames (25 fps)")
    ap.add_argument("--persona", default="video", choices=["video", "still"])
    ap.add_argument("--source-frames", type=int, default=24, help="frames of the persona video (looped)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=1.5)
    ap.add_argument("--deep-cache", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--low-vram", action="store_true")
    ap.add_argument(
        "--compile", action="store_true", help="torch.compile the UNet (compile time is reported)"
    )
    ap.add_argument("--no-prefetch", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--frame-size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"))
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak, for the ratio")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--compare", action="store_true", help="also time batched torch vs per-frame OpenCV warps"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")

    from pipelines.cache import DiskArrayCache
    from pipelines.engines.base import RenderSettings
    from pipelines.engines.latentsync.engine import LatentSyncEngine
    from pipelines.engines.latentsync.unet import RESOLUTIONS
    from pipelines.spec.engines import engine_settings
    from pipelines.speech.track import Speech

    tiny = args.size == "tiny"
    res = args.resolution or (64 if tiny else RESOLUTIONS[args.engine])
    n = args.frames
    w, h = args.frame_size

    t0 = time.perf_counter()
    components = build(tiny)
    build_s = time.perf_counter() - t0
    engine = LatentSyncEngine(
        args.engine,
        device=args.device,
        components=components,
        resolution=res,
        prefetch=not args.no_prefetch,
        profile=True,
    )
    opts = engine_settings(
        {
            "name": args.engine,
            "steps": args.steps,
            "guidance": args.guidance,
            "deep_cache": args.deep_cache,
            "dtype": args.dtype,
            "low_vram": args.low_vram,
            "compile": args.compile,
        }
    )
    settings = RenderSettings(fps=25.0, size=None, seed=1247, engine=opts)
    rng = np.random.default_rng(0)
    speech = Speech((0.1 * rng.standard_normal(int(16000 * n / 25))).astype(np.float32), 16000, 25.0, n)

    with tempfile.TemporaryDirectory() as tmp:
        source = write_persona(Path(tmp), args.persona, w, h, args.source_frames)
        t0 = time.perf_counter()
        prepared = engine.prepare(
            SimpleNamespace(source=source, looks={}, emotions={}), settings, DiskArrayCache(tmp)
        )
        prepare_s = time.perf_counter() - t0
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        encode_s, wall_s = render_and_encode(engine, prepared, speech, settings, Path(tmp) / "o.mp4")
        points = prepared.clips[""].points[0]
        first_frame = scene(w, h, 1)[0]

    stats = engine.stats
    stages = dict(stats["stages"])
    stages["encode"] = encode_s
    cfg = args.guidance > 1
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"LatentSync {args.engine} size={args.size} face={res}px frames={n} frame={w}x{h} persona={args.persona} "
        f"steps={args.steps} guidance={args.guidance} deep_cache={args.deep_cache} low_vram={args.low_vram} "
        f"compile={args.compile} prefetch={not args.no_prefetch} dtype={args.dtype} device={device_name} "
        f"threads={torch.get_num_threads()}"
    )
    print(
        f"model build (random weights): {build_s:.1f} s; prepare (face track of the persona, once): {prepare_s:.2f} s"
    )
    rows = [
        ("features", ["features"]),
        ("preprocessing", ["read", "expression", "preprocessing"]),
        ("  source decode", ["read"]),
        ("  expression warps", ["expression"]),
        ("  upload + crops + keys", ["preprocessing"]),
        ("unet", ["unet"]),
        ("vae", ["vae"]),
        ("offload (low-VRAM moves)", ["offload"]),
        ("paste-back (+ download)", ["paste-back"]),
        ("encode", ["encode"]),
    ]
    print_stages(stages, rows, n, wall_s)
    worker = sum(stages.get(k, 0.0) for k in ("read", "expression", "features", "preprocessing"))
    if not args.no_prefetch:
        hidden = max(worker - stats["prefetch_wait_s"], 0.0)
        print(
            f"prefetch: chunk preparation {worker:.2f} s on the background thread, the pipeline waited "
            f"{stats['prefetch_wait_s']:.2f} s for it (the first chunk's always): {hidden:.2f} s "
            f"({100 * hidden / max(worker, 1e-9):.0f}%) overlapped with the pipeline"
        )
    print_latent_cache(stats["reference_latents"])
    print_peak_memory(args.device)

    flops16 = unet_flops(TINY_UNET if tiny else None, 16, res, cfg)
    ch = engine.chunk_frames
    full_per_chunk = sum(1 for j in range(args.steps) if not args.deep_cache or j % 3 == 0)
    # per chunk, frames / 16 of the 16-frame count (UNet cost is linear in frames but for the tiny temporal part)
    unet_flops_total = sum(min(ch, n - c) / 16 * flops16 * full_per_chunk for c in range(0, n, ch))
    achieved = unet_flops_total / max(stages.get("unet", 0.0), 1e-9) / 1e12
    line = (
        f"UNet: {flops16 / 16 / 1e12:.4f} TFLOP per frame per forward (CFG batch incl.), "
        f"achieved {achieved:.3f} TFLOP/s"
    )
    if args.deep_cache:
        line += " (full forwards only counted; cached steps add a little)"
    if args.compile:
        line += " (UNet time includes compiling)"
    if args.peak_tflops:
        line += f" = {100 * achieved / args.peak_tflops:.1f}% of {args.peak_tflops:g}"
    print(line)
    if args.compare:
        compare([first_frame] * 16, points, RESOLUTIONS[args.engine], args.device)


if __name__ == "__main__":
    main()
