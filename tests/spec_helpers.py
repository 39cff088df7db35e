"""Project folders for the spec and CLI tests: personas/, jobs/, media files, all generated under tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

CONSENT = {"granted_by": "Test Person", "granted_on": "2024-05-01", "scope": "unit tests"}


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8"
    )
    return path


def touch(path: Path, content: bytes | None = None) -> Path:
    """A placeholder media file: a tiny real image for an image suffix (the spec decodes images, so a
    persona photo or logo that is not one is an error), else `content` (the spec never decodes audio/video)."""
    from PIL import Image

    from pipelines.media.formats import media_kind

    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None and media_kind(path) == "image":
        Image.new("RGB", (4, 4), (128, 100, 90)).save(path)
    else:
        path.write_bytes(b"x" if content is None else content)
    return path


def wav(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """A real (silent) 16-bit mono WAV file, for the checks that probe audio."""
    import wave

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * round(seconds * rate))
    return path


def persona_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "Ann Example", "source": "face.png", "consent": dict(CONSENT)}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def make_persona(
    root: Path, pid: str = "ann", *, media: tuple[str, ...] = ("face.png",), **overrides: Any
) -> Path:
    folder = root / "personas" / pid
    for name in media:
        touch(folder / name)
    return write_yaml(folder / "persona.yaml", persona_data(**overrides))


def job_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": "summary", "persona": "ann", "audio": "../audio/take.wav"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def make_project(root: Path, jobs: dict[str, Any] | None = None, **persona_overrides: Any) -> Path:
    """root/personas/ann (persona with face.png), root/audio/{take,b}.wav (2 s and 1 s of silence),
    root/jobs/<name>.yaml for each job."""
    make_persona(root, **persona_overrides)
    wav(root / "audio" / "take.wav", 2.0)
    wav(root / "audio" / "b.wav", 1.0)
    for name, data in (jobs or {"a": job_data()}).items():
        write_yaml(root / "jobs" / f"{name}.yaml", data)
    return root


def write_image(path: Path, image: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))
    return path


def astronaut(path: Path) -> Path:
    """skimage's public-domain NASA portrait: one clear frontal face."""
    import skimage.data

    return write_image(path, skimage.data.astronaut())


def faceless(path: Path) -> Path:
    """A smooth gradient: nothing a face detector can mistake for a face."""
    ramp = np.linspace(40, 200, 256, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], np.full((256, 256), 120.0)), axis=-1)
    return write_image(path, image.astype(np.uint8))


def errors_of(batch: Any) -> list[tuple[str | None, str]]:
    """(field, message) of each error, file names left out."""
    return [(e.field, e.message) for e in batch.errors]
