"""Frames per second of the media stages alone, at 512x512: the floor the preview engine is compared against.

Prints figures, asserts nothing. Frames are precomputed noise cycled from a small pool, so the figures are
ffmpeg's (encode + pipe), not frame generation's. Usage: python bench/media_encode_floor.py [N_FRAMES]
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.media.ffmpeg import ffmpeg_exe, run_ffmpeg  # noqa: E402
from pipelines.media.video_out import (  # noqa: E402
    DEFAULT_SEGMENT_FRAMES,
    AudioTrack,
    SegmentWriter,
    encode_final,
    mux_segments,
)

SIZE = (512, 512)
FPS = 25


def frame_pool() -> list[np.ndarray]:
    # smooth gradients plus mild noise: closer to a face video than pure noise, still not trivially compressible
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    pool = []
    for k in range(8):
        base = np.stack([(x + 7 * k) % 256, (y + 3 * k) % 256, ((x + y) // 2 + 11 * k) % 256], axis=-1)
        pool.append(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
    return pool


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    pool = frame_pool()
    print(f"ffmpeg: {ffmpeg_exe()}")
    print(f"{n} frames of {SIZE[0]}x{SIZE[1]} at {FPS} fps")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        wav = tmp_path / "audio.wav"
        run_ffmpeg(["-f", "lavfi", "-i", f"anoisesrc=sample_rate=48000:d={n / FPS}", "-y", str(wav)])

        for preset in ("ultrafast", "superfast", "veryfast", "medium"):
            t0 = time.perf_counter()
            encode_final(
                (pool[i % len(pool)] for i in range(n)),
                n,
                FPS,
                SIZE,
                wav,
                tmp_path / f"{preset}.mp4",
                18,
                preset,
            )
            dt = time.perf_counter() - t0
            size_mb = (tmp_path / f"{preset}.mp4").stat().st_size / 1e6
            print(
                f"encode_final crf 18 preset {preset:9s}: {n / dt:7.1f} frames/s  ({dt:.2f} s, {size_mb:.1f} MB)"
            )

        # The render path writes resumable segments then joins them: what that costs against one segment.
        work = tmp_path / "segments"
        t0 = time.perf_counter()
        audio = AudioTrack(wav, n, FPS, tmp_path)
        with SegmentWriter(work, FPS, SIZE, 18, "veryfast", segment_frames=DEFAULT_SEGMENT_FRAMES) as writer:
            for i in range(n):
                writer.write(pool[i % len(pool)])
        mux_segments(work, n, FPS, audio.finish(), tmp_path / "segmented.mp4")
        dt = time.perf_counter() - t0
        size_mb = (tmp_path / "segmented.mp4").stat().st_size / 1e6
        print(
            f"segments of {DEFAULT_SEGMENT_FRAMES} + mux (veryfast)  : {n / dt:7.1f} frames/s  ({dt:.2f} s, {size_mb:.1f} MB)"
        )
    print(f"peak RSS of this process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
