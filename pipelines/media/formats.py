"""Which files talkreel treats as still images and which as videos (by suffix): one list for every module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def media_kind(path: str | os.PathLike) -> Literal["image", "video"] | None:
    """ "image", "video", or None for a suffix talkreel does not read as either."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None
