"""`make bench`: every benchmark at a size that finishes in a few minutes on a 2-core CPU machine.

Each script prints its own figures (nothing is asserted); run one alone with larger sizes for the real numbers,
e.g. `python bench/memory_scaling.py` (10 s vs 10 min) or `python bench/latentsync_speed.py --device cuda`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUNS = [
    ["media_encode_floor.py", "250"],
    ["preview_speed.py", "250"],
    ["face_speed.py", "--frames", "50"],
    ["speech_speed.py", "--minutes", "1"],
    ["compose_speed.py", "--frames", "12"],
    ["latentsync_speed.py", "--size", "tiny", "--frames", "16", "--steps", "2"],
    ["echomimic_v2_speed.py", "--size", "tiny", "--seconds", "3", "12", "--steps", "1"],
    ["musetalk_speed.py", "--size", "tiny", "--frames", "16"],
    ["memory_scaling.py", "--short", "10", "--long", "120"],
    ["batch_scaling.py", "--jobs", "8", "--seconds", "1", "--model-jobs", "2"],
]


def main() -> int:
    failed = []
    for script, *args in RUNS:
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
