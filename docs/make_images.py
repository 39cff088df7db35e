"""The README's example frames: render the example jobs (`make demo`) and save one frame of each as JPEG, and a
strip of preview close-ups of the demo portrait (mouth openings and a blink, in colour and in greyscale).

.venv/bin/python docs/make_images.py          # renders the jobs first when out/ lacks one (--fresh: always)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from pipelines.media.video_in import iter_frames

REPO = Path(__file__).resolve().parents[1]
# job -> the second to show: the title card, a lower third over the picture-in-picture, a burnt-in caption.
FRAMES = {"intro": 1.2, "summary": 5.0, "faq": 5.0}
# the close-ups: (mouth opening, blink) of each tile, left to right
CLOSEUPS = ((0.0, 0.0), (0.45, 0.0), (0.9, 0.0), (0.3, 0.6))


def main() -> None:
    out = REPO / "out"
    if "--fresh" in sys.argv or not all((out / f"{job}.mp4").is_file() for job in FRAMES):
        subprocess.run(
            [sys.executable, "-m", "cli", "render", str(REPO / "jobs"), "--out", str(out), "--force"],
            check=True,
        )
    for job, seconds in FRAMES.items():
        index = round(seconds * 25)
        frame = next(f for i, f in enumerate(iter_frames(out / f"{job}.mp4")) if i == index)
        image = Image.fromarray(frame)
        image.thumbnail((640, 640))
        target = REPO / "docs" / "images" / f"{job}.jpg"
        image.save(target, quality=85)
        print(target)
    target = REPO / "docs" / "images" / "preview_closeups.jpg"
    Image.fromarray(closeups()).save(target, quality=88)
    print(target)


def closeups() -> np.ndarray:
    """Two rows of close-ups (colour, then the same portrait in greyscale) as one RGB image."""
    import cv2

    from pipelines.engines.base import RenderSettings
    from pipelines.engines.preview.demo import ensure_demo_portrait
    from pipelines.engines.preview.engine import PreviewEngine
    from pipelines.spec.engines import PreviewSettings

    class Memory:
        def get_or_compute(self, namespace, key, compute):
            return compute()

    scratch = tempfile.TemporaryDirectory(prefix="talkreel-closeups-")  # (removed when the function returns)
    folder = Path(scratch.name)
    colour = ensure_demo_portrait(folder)
    grey = folder / "grey.png"
    cv2.imwrite(str(grey), cv2.imread(str(colour), cv2.IMREAD_GRAYSCALE))
    settings = RenderSettings(fps=25.0, size=(512, 512), seed=0, engine=PreviewSettings())
    rows = []
    for source in (colour, grey):
        prep = PreviewEngine().prepare(
            SimpleNamespace(source=source, source_kind="image"), settings, Memory()
        )
        rig, m = prep.rig, prep.margin
        tiles = []
        for opening, blink in CLOSEUPS:
            image = rig.apply(prep.frame, {"mouth_open": opening, "blink": blink})[..., :3]
            centre = rig.points[[13, 14]].mean(0) if blink == 0 else rig.points[[159, 386, 13]].mean(0)
            half = int(0.9 * rig.unit) if blink == 0 else int(1.1 * rig.unit)
            x, y = np.round(centre).astype(int)
            crop = image[max(y - half, m) : y + half, max(x - half, m) : x + half]
            tiles.append(cv2.resize(crop, (240, 240), interpolation=cv2.INTER_AREA))
        rows.append(np.hstack(tiles))
    return np.vstack(rows)


if __name__ == "__main__":
    main()
