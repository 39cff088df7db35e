"""Reading an output's provenance back: the watermark vote over decoded frames and the C2PA manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.errors import InputError
from pipelines.provenance.c2pa_manifest import read_manifest
from pipelines.provenance.watermark import sample_frames, vote


def _frame_count(path: Path) -> int | None:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(path, None, "has no video stream")
            return container.streams.video[0].frames or None
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(path, None, f"not a readable video ({exc})") from None


def read_watermark(path: Path, n_frames: int = 24) -> dict[str, Any]:
    from pipelines.media.video_in import iter_frames

    total = _frame_count(path)
    return vote(sample_frames(iter_frames(path), total, n_frames)).as_dict()


def verify_file(path: Path, trust_anchors: list[Path] | None = None, n_frames: int = 24) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "file not found")
    return {
        "file": str(path),
        "watermark": read_watermark(path, n_frames),
        "c2pa": read_manifest(path, trust_anchors).as_dict(),
    }
