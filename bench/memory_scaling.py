"""Peak memory of a whole `talkreel render` against clip length: memory must not grow with the clip.

Renders the same persona with a short and a long generated speech-like audio (preview engine by default) in
separate processes and prints each process tree's peak RSS, wall time, frames/s and the long/short ratio
(target: <= 1.3).

    .venv/bin/python bench/memory_scaling.py                 # 10 s vs 600 s
    .venv/bin/python bench/memory_scaling.py --long 120      # a quicker look
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def speech_like_wav(path: Path, seconds: float) -> None:
    """Syllable-rate amplitude-modulated tones with pauses: exercises the mouth like speech, made by ffmpeg."""
    from pipelines.media.ffmpeg import run_ffmpeg

    expr = "0.5*sin(2*PI*180*t)*(0.5+0.5*sin(2*PI*4*t))*gt(sin(2*PI*0.2*t)\\,-0.6)"
    run_ffmpeg(
        ["-f", "lavfi", "-i", f"aevalsrc={expr}:s=16000:d={seconds}", "-ac", "1", "-y", str(path)],
        what="bench audio",
    )


def make_project(root: Path, seconds: float, engine: str) -> Path:
    from PIL import Image
    from skimage.data import astronaut

    persona = root / "personas" / "bench"
    persona.mkdir(parents=True, exist_ok=True)
    Image.fromarray(astronaut()).save(persona / "portrait.png")
    (persona / "persona.yaml").write_text(
        "name: Bench\nsource: portrait.png\n"
        "consent: {granted_by: NASA (public domain), granted_on: 2024-01-01, scope: benchmarks}\n"
    )
    jobs = root / "jobs"
    jobs.mkdir(exist_ok=True)
    speech_like_wav(root / "speech.wav", seconds)
    (jobs / "bench.yaml").write_text(
        f"kind: summary\npersona: bench\naudio: ../speech.wav\nengine: {engine}\n"
        "emotion: [{start: 0, emotion: happy, intensity: 0.5}]\n"
    )
    return jobs


def run(seconds: float, engine: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        jobs = make_project(root, seconds, engine)
        # This checkout's code, whichever environment runs the bench.
        env = {**os.environ, "TALKREEL_CACHE": str(root / "cache"), "PYTHONPATH": str(REPO)}
        # A fresh helper process per run, so RUSAGE_CHILDREN's max RSS is this render's alone.
        code = (
            "import resource,subprocess,sys,time;t=time.perf_counter();"
            "r=subprocess.run(sys.argv[1:]);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter()-t, r.returncode)"
        )
        cmd = [
            sys.executable,
            "-c",
            code,
            sys.executable,
            "-m",
            "cli",
            "render",
            str(jobs),
            "--out",
            str(root / "out"),
            "--quiet",
            "--force",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, check=True)
        rss_kb, wall, rc = out.stdout.split()
        if int(rc) != 0:
            raise SystemExit(f"render failed ({rc}):\n{out.stderr}")
        frames = round(seconds * 25)
        return {
            "seconds": seconds,
            "peak_rss_mb": int(rss_kb) / 1024,
            "wall_s": float(wall),
            "fps": frames / float(wall),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=float, default=10.0)
    parser.add_argument("--long", type=float, default=600.0)
    parser.add_argument("--engine", default="preview")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    rows = [run(args.short, args.engine), run(args.long, args.engine)]
    print(f"{'clip s':>8} {'peak RSS MiB':>13} {'wall s':>8} {'frames/s':>9}")
    for r in rows:
        print(f"{r['seconds']:8.0f} {r['peak_rss_mb']:13.1f} {r['wall_s']:8.1f} {r['fps']:9.1f}")
    print(
        f"peak memory ratio long/short: {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.3f} (target <= 1.3)"
    )


if __name__ == "__main__":
    main()
