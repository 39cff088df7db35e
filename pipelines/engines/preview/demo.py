"""The demo persona's face, made on the user's machine from an image a package ships.

scikit-image ships NASA's public-domain portrait of astronaut Eileen Collins (`skimage.data.astronaut()`); the
repository never carries the picture itself. `make demo` (and the tests) call `ensure_demo_portrait()` before
rendering the example jobs.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parents[3] / "personas" / "demo"


def ensure_demo_portrait(persona_dir: str | Path = DEMO_DIR, force: bool = False) -> Path:
    """Write `<persona_dir>/portrait.png` from skimage.data.astronaut() unless it is there; returns its path."""
    import cv2
    from skimage import data

    path = Path(persona_dir) / "portrait.png"
    if path.is_file() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {tmp}")
    tmp.replace(path)
    return path


if __name__ == "__main__":
    print(ensure_demo_portrait())
