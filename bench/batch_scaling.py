"""How a batch scales with workers, and what a job costs once a worker's models are loaded.

Prints figures, asserts nothing. A throwaway project holds the astronaut persona and short jobs (a tone with a
syllable rhythm, different seeds). Figures:
- wall time of `talkreel render --workers 1` and `--workers 2` on N short preview jobs (default 8), each a fresh
  process as a user runs it (start-up, planning and worker start-up included; the persona is prepared beforehand,
  as a cached persona is), and the ratio. Preview workers are CPU workers, so the ratio is bounded by the cores
  the machine has free (on a shared 2-core machine, well under 2x);
- a model engine (latentsync-1.6 with tiny random weights in the hub formats, 64 px faces; CUDA when present) on
  K jobs in one batch, one worker: each job's seconds and its overhead (the job's time less the stages that
  make frames: engine, compose, encode), the first job's including the model load, the later ones not.
Usage: python bench/batch_scaling.py [--jobs N] [--seconds S] [--model-jobs K]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.render import Timings  # noqa: E402
from tests.project_helpers import make_project, tone_wav  # noqa: E402

PREVIEW_JOB = """\
kind: summary
persona: test
seed: {seed}
audio: ../take.wav
output: {{size: [256, 256]}}
"""
MODEL_JOB = """\
kind: summary
persona: test
seed: {seed}
audio: ../take.wav
engine: {{name: latentsync-1.6, steps: 2}}
output: {{size: [256, 256]}}
"""
FRAME_STAGES = ("engine", "compose", "encode")  # frames being made (engine overlaps the other two)


def render(root: Path, env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "render", "jobs", *args, "--json", "--no-qc"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"talkreel render {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def preview_scaling(root: Path, env: dict[str, str], n_jobs: int, seconds: float) -> None:
    tone_wav(root / "take.wav", seconds)
    make_project(root, {f"job{i:02d}": PREVIEW_JOB.format(seed=i) for i in range(n_jobs)})
    render(root, env, "--out", "warm", "--shard", f"1/{n_jobs}")  # prepares (caches) the persona
    walls = {}
    for workers in (1, 2):
        timings = Timings()
        with timings.stage("wall"):
            report = render(root, env, "--out", f"w{workers}", "--workers", str(workers))
        walls[workers] = timings.stages["wall"]
        done = report["counts"].get("rendered", 0)
        frames = sum(j.get("frames", 0) for j in report["jobs"])
        by = len({j.get("worker") for j in report["jobs"]})
        print(
            f"preview, {n_jobs} jobs of {seconds:g} s ({frames} frames), --workers {workers}: "
            f"{walls[workers]:.1f} s wall, {done} rendered on {by} process(es)"
        )
    print(f"  1 -> 2 workers: {walls[1] / walls[2]:.2f}x faster (cores: {os.cpu_count()})")


def model_overhead(root: Path, env: dict[str, str], n_jobs: int, seconds: float) -> None:
    import torch

    from tests.latentsync_helpers import write_tiny_weights

    env = {**env, "TALKREEL_WEIGHTS": str(root / "weights"), "TALKREEL_LATENTSYNC_RESOLUTION": "64"}
    os.environ.update(env)
    write_tiny_weights("latentsync-1.6")
    tone_wav(root / "take.wav", seconds)
    make_project(root, {f"model{i:02d}": MODEL_JOB.format(seed=i) for i in range(n_jobs)})
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = render(root, env, "--out", "model")
    print(f"latentsync-1.6, tiny weights, 64 px faces, {device}, {n_jobs} jobs of {seconds:g} s, one worker:")
    overheads = []
    for k, job in enumerate(report["jobs"]):
        record = json.loads(Path(job["output"]).with_suffix(".json").read_text())
        stages = record["timings"]
        making = sum(stages.get(s, 0.0) for s in FRAME_STAGES if s != "engine") + stages.get(
            "engine_wait", 0.0
        )
        overhead = job["seconds"] - making
        if k:
            overheads.append(overhead)
        print(
            f"  job {k + 1}: {job['seconds']:.2f} s, overhead {overhead:.2f} s (prepare {stages.get('prepare', 0):.2f} s)"
        )
    if overheads:
        print(
            f"  per-job overhead after the first: {sum(overheads) / len(overheads):.2f} s (models kept loaded)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--model-jobs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="talkreel-batch-scaling-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(REPO), "TALKREEL_CACHE": str(root / "cache")}
        (root / "preview").mkdir()
        preview_scaling(root / "preview", env, args.jobs, args.seconds)
        if args.model_jobs:
            (root / "model").mkdir()
            model_overhead(root / "model", env, args.model_jobs, 1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
