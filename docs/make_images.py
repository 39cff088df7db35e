"""The README's example frames: render the example jobs (`make demo`) and save one frame of each as JPEG.

.venv/bin/python docs/make_images.py          # after `make demo` (renders first if out/ lacks a job)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from pipelines.media.video_in import iter_frames

REPO = Path(__file__).resolve().parents[1]
# job -> the second to show: the title card, a lower third over the picture-in-picture, a burnt-in caption.
FRAMES = {"intro": 1.2, "summary": 5.0, "faq": 5.0}


def main() -> None:
    out = REPO / "out"
    if not all((out / f"{job}.mp4").is_file() for job in FRAMES):
        subprocess.run(
            [sys.executable, "-m", "cli", "render", str(REPO / "jobs"), "--out", str(out)], check=True
        )
    for job, seconds in FRAMES.items():
        index = round(seconds * 25)
        frame = next(f for i, f in enumerate(iter_frames(out / f"{job}.mp4")) if i == index)
        image = Image.fromarray(frame)
        image.thumbnail((640, 640))
        target = REPO / "docs" / "images" / f"{job}.jpg"
        image.save(target, quality=85)
        print(target)


if __name__ == "__main__":
    main()
