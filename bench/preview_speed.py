"""Frames per second of the preview engine on the demo portrait at 512x512, and its ratio to encoding alone.

Prints figures, asserts nothing. The persona is prepared first (not timed: it is cached per persona). Speech is
espeak-ng draft speech repeated to N frames with an emotion track, so the mouth, expressions and blinks all move.
Figures:
- render: the engine alone (frames produced and dropped);
- render + encode: frames piped into pipelines.media encode_final (H.264 + AAC mux, the job's final encode);
- job path: render -> lossless chunks (stage A) -> chunk decode -> encode_final (stage B), as render.py does;
- encode alone: the same number of frames (the rendered ones, held in memory) through encode_final only, the floor;
- ratios of the two pipelines' times to that floor.
Usage: python bench/preview_speed.py [N_FRAMES] [--preset P]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import wave
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.engines.base import RenderSettings  # noqa: E402
from pipelines.engines.preview.demo import ensure_demo_portrait  # noqa: E402
from pipelines.engines.preview.engine import PreviewEngine  # noqa: E402
from pipelines.expression.build import build_expression_track  # noqa: E402
from pipelines.spec.engines import PreviewSettings  # noqa: E402
from pipelines.speech.track import Speech  # noqa: E402

FPS = 25.0
SIZE = (512, 512)
RATE = 16000
TEXT = (
    "Welcome back. Today we look at three things: what changed, why it matters, and what comes next. "
    "Pauses close the mouth; words open it again."
)


class MemoryCache:
    def __init__(self):
        self.store = {}

    def get_or_compute(self, namespace, key, compute):
        return self.store.setdefault((namespace, key), compute())


def make_speech(n_frames: int) -> Speech:
    from math import gcd

    from scipy.signal import resample_poly

    from pipelines.speech.track import TimedUnit
    from pipelines.speech.tts import synthesize

    syn = synthesize(TEXT)
    g = gcd(RATE, syn.sample_rate)
    one = resample_poly(syn.samples, RATE // g, syn.sample_rate // g).astype(np.float32)
    n_samples = int(round(n_frames / FPS * RATE))
    reps = -(-n_samples // len(one))
    samples = np.tile(one, reps)[:n_samples]
    period = len(one) / RATE
    phonemes, words = [], []
    for r in range(reps):
        for src, dst in ((syn.phonemes, phonemes), (syn.words, words)):
            for u in src:
                if u.start + r * period < n_frames / FPS:
                    dst.append(
                        TimedUnit(u.start + r * period, min(u.end + r * period, n_frames / FPS), u.label)
                    )
    return Speech(samples, RATE, FPS, n_frames, tuple(phonemes), tuple(words))


def write_wav(path: Path, speech: Speech) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(speech.sample_rate)
        w.writeframes((np.clip(speech.samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


def main() -> None:
    from pipelines.media.video_out import ChunkWriter, encode_final, iter_chunk_frames

    ap = argparse.ArgumentParser()
    ap.add_argument("n_frames", nargs="?", type=int, default=750)
    ap.add_argument(
        "--preset", default="medium", help="x264 preset of the final encode (the job default: medium)"
    )
    args = ap.parse_args()
    n = args.n_frames

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        portrait = ensure_demo_portrait(tmp / "demo")
        settings = RenderSettings(fps=FPS, size=SIZE, seed=0, engine=PreviewSettings())
        engine = PreviewEngine()
        t = time.perf_counter()
        prep = engine.prepare(SimpleNamespace(source=portrait, source_kind="image"), settings, MemoryCache())
        t_prepare = time.perf_counter() - t
        speech = make_speech(n)
        wav = write_wav(tmp / "speech.wav", speech)
        entries = [
            (0, None, "happy", 0.7),
            (6, None, "thinking", 0.6),
            (12, None, "surprised", 0.8),
            (18, None, "neutral", 1),
        ]
        expression = build_expression_track(entries, n, FPS, seed=1)

        def frames():
            return (f.image for f in engine.render(prep, speech, expression, settings))

        # warm-up: the first frames of a persona compute its warp bases
        for _ in zip(range(30), frames(), strict=False):
            pass

        t, c = time.perf_counter(), time.process_time()
        held = [f.copy() for f in frames()]
        t_render, c_render = time.perf_counter() - t, time.process_time() - c

        t = time.perf_counter()
        encode_final(frames(), n, FPS, SIZE, wav, tmp / "a.mp4", preset=args.preset)
        t_render_encode = time.perf_counter() - t

        t = time.perf_counter()
        with ChunkWriter(tmp / "chunks", FPS, SIZE) as writer:
            for image in frames():
                writer.write(image)
        encode_final(iter_chunk_frames(tmp / "chunks"), n, FPS, SIZE, wav, tmp / "b.mp4", preset=args.preset)
        t_job = time.perf_counter() - t

        t = time.perf_counter()
        encode_final(iter(held), n, FPS, SIZE, wav, tmp / "c.mp4", preset=args.preset)
        t_encode = time.perf_counter() - t

    print(
        f"preview engine, {SIZE[0]}x{SIZE[1]}, {n} frames ({n / FPS:.0f} s at {FPS:g} fps), x264 preset {args.preset}"
    )
    print(f"  prepare (once per persona, cached):  {t_prepare:8.2f} s")
    print(f"  render alone:                        {n / t_render:8.1f} frames/s")
    # CPU time says what the render costs even when other processes share the cores (wall figures then drop)
    print(f"  render CPU time per frame:           {1000 * c_render / n:8.2f} ms (all threads)")
    print(f"  render + final encode/mux:           {n / t_render_encode:8.1f} frames/s")
    print(f"  job path (render, chunks, encode):   {n / t_job:8.1f} frames/s")
    print(f"  final encode alone (the floor):      {n / t_encode:8.1f} frames/s")
    print(f"  ratio render+encode / floor:         {t_render_encode / t_encode:8.2f} x the floor's time")
    print(f"  ratio job path / floor:              {t_job / t_encode:8.2f} x the floor's time")
    print(f"  real time factor (render + encode):  {n / FPS / t_render_encode:8.1f} x")
    print(
        f"  load average at the end:             {' '.join(f'{v:.1f}' for v in os.getloadavg())} ({os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
