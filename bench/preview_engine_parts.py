"""CPU time per frame of the preview engine's still-portrait render, whole and by part. Prints figures, asserts
nothing.

Single-threaded, as the render loop runs the engine on its own thread next to the compositor: OpenCV at one
thread and OPENBLAS_NUM_THREADS=1 unless told otherwise. The demo portrait at 512x512, speech as in
bench/preview_speed.py (espeak-ng, repeated to N frames) and an expression track with happy, surprised and
thinking, so mouth, brows, eyes and blinks all move. Figures (best of --reps, process CPU time):
- speech mouth curves: computed once per render call (pipelines.speech.mouth), spread over the frames;
- engine: everything else render() does per frame;
- parts of the engine frame, timed by wrapping them (a part nested in another counts in both; a part an
  older tree lacks stays at 0, so the script runs on the trees it compares): the warp moved by the head motion
  (FaceRig.apply_moved: the eye patch painted into a kept copy of the portrait when its amounts change, the
  mouth's maps composed with the motion, one resampling of each pixel, the fills), or in older trees the
  expression warp (FaceRig.apply) followed by a cv2.warpAffine of the whole frame; then RGBA -> RGB.
Usage: python bench/preview_engine_parts.py [N_FRAMES] [--reps R] [--threads T]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import preview_speed  # noqa: E402

import pipelines.expression.warp as warp  # noqa: E402
import pipelines.speech.mouth as mouth  # noqa: E402
from pipelines.cache import DiskArrayCache  # noqa: E402
from pipelines.engines.base import RenderSettings  # noqa: E402
from pipelines.engines.preview.engine import PreviewEngine  # noqa: E402
from pipelines.expression.build import build_expression_track  # noqa: E402
from pipelines.spec.engines import PreviewSettings  # noqa: E402
from pipelines.spec.loader import load_batch  # noqa: E402

EMOTIONS = [(0, None, "happy", 0.7), (5, None, "surprised", 0.8), (10, None, "thinking", 0.6)]
PARTS = [  # (class in pipelines.expression.warp or None for the module, function, label)
    ("FaceRig", "apply_moved", "warp and head motion (FaceRig.apply_moved)"),
    ("FaceRig", "apply", "expression warp (FaceRig.apply, older trees)"),
    ("FaceRig", "_upper_canvas", "  eye patch into the kept copy"),
    ("_Patch", "moving", "  fields and their inverses"),
    ("_Patch", "apply", "  patch maps and resampling"),
    ("_Patch", "moved_maps", "  mouth maps composed with the motion"),
    (None, "mouth_fill", "  mouth_fill"),
    (None, "lip_seam", "  lip_seam"),
    (None, "eyelid_fill", "  eyelid_fill"),
]


def _timed(owner, name: str, label: str, totals: dict[str, float]) -> None:
    original = getattr(owner, name, None)
    if original is None:  # an older tree without this part: it stays at 0
        return

    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] += time.process_time() - start

    setattr(owner, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n_frames", nargs="?", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1)")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    n = args.n_frames

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        speech = preview_speed.make_speech(n)
        loaded = load_batch([preview_speed.make_project(tmp, speech, None)]).jobs[0]
        settings = RenderSettings(
            fps=preview_speed.FPS, size=preview_speed.SIZE, seed=0, engine=PreviewSettings()
        )
        engine = PreviewEngine()
        prep = engine.prepare(loaded.persona, settings, DiskArrayCache(tmp / "cache"))
        expression = build_expression_track(EMOTIONS, n, preview_speed.FPS, seed=1)

        def render() -> float:
            start = time.process_time()
            for _ in engine.render(prep, speech, expression, settings):
                pass
            return time.process_time() - start

        render()  # builds the warp rig's bases (once per persona) outside the timing
        curves = min(_cpu(lambda: mouth.mouth_curves(speech)) for _ in range(args.reps))
        whole = min(render() for _ in range(args.reps))

        totals: dict[str, float] = defaultdict(float)
        for owner, name, label in PARTS:
            _timed(getattr(warp, owner) if owner else warp, name, label, totals)
        _timed(cv2, "warpAffine", "cv2.warpAffine (head motion)", totals)
        _timed(cv2, "cvtColor", "RGBA -> RGB", totals)
        render()

    ms = 1000.0 / n
    print(f"preview engine, still portrait {preview_speed.SIZE[0]}x{preview_speed.SIZE[1]}, {n} frames,")
    print(
        f"OpenCV threads {cv2.getNumThreads()}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
        f"process CPU, best of {args.reps}"
    )
    print(f"  render() in all:                     {whole * ms:6.3f} ms/frame  ({n / whole:6.0f} frames/s)")
    print(f"  of which speech mouth curves (once): {curves * ms:6.3f} ms/frame")
    print(f"  engine per frame:                    {(whole - curves) * ms:6.3f} ms/frame")
    print("  parts (one wrapped render):")
    for label in [label for *_, label in PARTS] + ["cv2.warpAffine (head motion)", "RGBA -> RGB"]:
        print(f"    {label:44s} {totals[label] * ms:6.3f} ms/frame")


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


if __name__ == "__main__":
    main()
