"""What the model engines' speed benches share: one render piped into libx264 as `talkreel render` does, and the
per-stage report printed from the engine's profiling stats (seconds per video frame, the reference-latent cache,
peak memory).

    encode_s, wall_s = render_and_encode(engine, prepared, speech, settings, Path(tmp) / "o.mp4")
    print_stages(stages, [("unet", "unet"), ("preprocessing", ["read", "crop"]), ...], n, wall_s)
    print_latent_cache(engine.stats["reference_latents"])
    print_peak_memory(device)
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from pathlib import Path

LABEL_WIDTH = 32


def render_and_encode(engine, prepared, speech, settings, out: Path) -> tuple[float, float]:
    """Render every frame of `speech` (neutral expression) and encode it to `out` with libx264 (CRF 18, preset
    medium, yuv420p): (seconds spent encoding, wall seconds of render + encode)."""
    import imageio_ffmpeg

    from pipelines.expression.track import ExpressionTrack

    n = speech.n_frames
    writer = imageio_ffmpeg.write_frames(
        str(out), engine.frame_size(prepared), fps=25, codec="libx264", pix_fmt_out="yuv420p", quality=None,
        output_params=["-crf", "18", "-preset", "medium"],
    )  # fmt: skip
    writer.send(None)
    encode_s = 0.0
    t0 = time.perf_counter()
    for frame in engine.render(prepared, speech, ExpressionTrack.neutral(n), settings):
        t = time.perf_counter()
        writer.send(frame.image)
        encode_s += time.perf_counter() - t
    t = time.perf_counter()
    writer.close()
    encode_s += time.perf_counter() - t
    return encode_s, time.perf_counter() - t0


def print_stages(
    stages: dict[str, float], rows: Sequence[tuple[str, str | Sequence[str]]], n: int, wall_s: float
) -> None:
    """One line per row (a label and the stage, or the stages summed, it shows) in seconds per video frame, then
    the wall clock against real time at 25 fps."""
    for label, keys in rows:
        keys = [keys] if isinstance(keys, str) else keys
        print(f"  {label:{LABEL_WIDTH}s} {sum(stages.get(k, 0.0) for k in keys) / n:9.4f} s per video frame")
    print(
        f"  {'wall clock (render + encode)':{LABEL_WIDTH}s} {wall_s / n:9.4f} s per video frame ({n / wall_s:.2f} "
        f"frames/s, {n / 25 / wall_s:.2f}x real time at 25 fps)"
    )


def print_latent_cache(latents: dict[str, int]) -> None:
    """How many VAE encodes the engine's reference-latent cache saved (each crop is encoded twice: masked, whole)."""
    total = latents["encoded"] + latents["reused"]
    print(
        f"reference-latent cache: {latents['encoded']} crops encoded, {latents['reused']} reused of {total} "
        f"({2 * latents['reused']} VAE image encodes saved, {100 * latents['reused'] / max(total, 1):.0f}%)"
    )


def print_peak_memory(device: str) -> None:
    """Peak GPU memory (on CUDA) and this process's peak RSS."""
    import torch

    if device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"peak process RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
