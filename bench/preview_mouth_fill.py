"""CPU time of one call of the painted mouth interior (pipelines.expression.mouth_interior.mouth_fill), the part of
a photo's frame that runs on every open frame. Prints figures, asserts nothing.

A drawn opening of a 512x512 portrait's face (pupil distance 122 px, mouth 100 px wide) at inner-lip gaps of 4 to
36 px, for the three kinds of portrait the interior treats apart: a closed mouth (all the upper teeth painted),
parted lips showing the teeth's upper half (half painted), a grin showing them whole (none painted). Process CPU
time, the best of --reps runs of --calls calls each; OpenCV at one thread, OPENBLAS_NUM_THREADS=1, as the render
loop runs it.

--against REF: the same calls on git revision REF's mouth_interior.py (loaded from `git show`, next to this
tree's), alternated run by run, with the ratio; a revision whose mouth_fill takes a bool for its teeth gets what
the engine passed it then (teeth for a closed mouth only).
Usage: python bench/preview_mouth_fill.py [--reps R] [--calls N] [--against REF]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pipelines.expression.mouth_interior as current  # noqa: E402

UNIT = 122.0
GAPS = (4, 12, 24, 36)
KINDS = (("closed", 1.0), ("parted", 0.5), ("grin", 0.0))


def _lines(gap: float, n: int = 11) -> tuple[np.ndarray, np.ndarray]:
    cx = np.linspace(-1.0, 1.0, n)
    xs = 256.0 + 50.0 * cx
    return np.stack([xs, 300.0 + 6.0 * (1 - cx**2)], 1), np.stack([xs, 300.0 + (6.0 + gap) * (1 - cx**2)], 1)


def _load(ref: str):
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:pipelines/expression/mouth_interior.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    scratch = tempfile.TemporaryDirectory(prefix="talkreel-bench-")
    path = Path(scratch.name) / "mouth_interior_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("mouth_interior_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(module, teeth: float, gap: float, calls: int) -> float:
    """ms of CPU per call."""
    palette = module.MouthPalette(
        np.array([180, 90, 90], np.float32),
        np.array([200, 150, 130], np.float32),
        np.array([230, 225, 215], np.float32),
    )
    image = np.full((512, 512, 4), 128, np.uint8)  # (the engine warps RGBA)
    top, bottom = _lines(gap)
    opening = min(1.3, gap / 36.0)
    takes_share = hasattr(module, "teeth_share")  # this tree's: a share of the teeth; older trees: a bool
    arg = teeth if takes_share else teeth >= 1.0
    start = time.process_time()
    for _ in range(calls):
        module.mouth_fill(image, top, bottom, UNIT, opening, arg, palette)
    return (time.process_time() - start) * 1000.0 / calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--against", default=None, help="a git revision to compare with")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    modules = {"this tree": current}
    if args.against:
        modules[args.against] = _load(args.against)
    best = {(name, kind, gap): float("inf") for name in modules for kind, _ in KINDS for gap in GAPS}
    for _ in range(args.reps):
        for kind, teeth in KINDS:
            for gap in GAPS:
                for name, module in modules.items():  # alternated: the machine's load falls on both alike
                    best[(name, kind, gap)] = min(
                        best[(name, kind, gap)], _run(module, teeth, gap, args.calls)
                    )
    print(
        f"mouth_fill, 512x512 face (pupil distance {UNIT:.0f} px), process CPU ms per call, best of {args.reps}"
    )
    header = "".join(f"   gap {g:2d} px" for g in GAPS)
    for name in modules:
        print(f"  {name}")
        print(f"    {'':8s}{header}")
        for kind, _ in KINDS:
            row = "".join(f"{best[(name, kind, g)]:12.3f}" for g in GAPS)
            print(f"    {kind:8s}{row}")
    if args.against:
        print(f"  ratio this tree / {args.against}")
        for kind, _ in KINDS:
            row = "".join(
                f"{best[('this tree', kind, g)] / best[(args.against, kind, g)]:11.2f}x" for g in GAPS
            )
            print(f"    {kind:8s}{row}")


if __name__ == "__main__":
    main()
