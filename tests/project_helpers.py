"""A throwaway talkreel project (personas/ + jobs/) in a temp folder, with a package-shipped portrait."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PERSONA_YAML = """\
name: Test Persona
source: portrait.png
consent:
  granted_by: NASA (public domain image shipped by scikit-image)
  granted_on: 2024-01-01
  scope: automated tests
"""


def portrait(size: int = 256) -> np.ndarray:
    from skimage.data import astronaut

    return np.asarray(Image.fromarray(astronaut()).resize((size, size), Image.LANCZOS))


def make_project(root: Path, jobs: dict[str, str], persona_size: int = 256) -> Path:
    """Write personas/test (the astronaut portrait) and jobs/<name>.yaml; return the jobs folder."""
    persona = root / "personas" / "test"
    persona.mkdir(parents=True, exist_ok=True)
    Image.fromarray(portrait(persona_size)).save(persona / "portrait.png")
    (persona / "persona.yaml").write_text(PERSONA_YAML)
    jobs_dir = root / "jobs"
    jobs_dir.mkdir(exist_ok=True)
    for name, text in jobs.items():
        (jobs_dir / f"{name}.yaml").write_text(text)
    return jobs_dir


def tone_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    """Speech-like audio: a syllable-rate modulated tone with a pause, written by the real ffmpeg."""
    from pipelines.media.ffmpeg import run_ffmpeg

    expr = "0.5*sin(2*PI*180*t)*(0.5+0.5*sin(2*PI*4*t))"
    run_ffmpeg(
        ["-f", "lavfi", "-i", f"aevalsrc={expr}:s={rate}:d={seconds}", "-ac", "1", "-y", str(path)],
        what="test audio",
    )
    return path
