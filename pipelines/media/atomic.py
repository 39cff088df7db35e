"""Temporary names next to a final path, unique per process, and the move into place."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def temp_path_for(path: str | os.PathLike) -> Path:
    """A hidden sibling of `path` that no other process (or other call in this one) will ever pick.

    Same folder so the final os.replace is a rename on one filesystem (atomic); the suffix stays last so
    tools that look at extensions still see `.mp4` / `.mkv` / `.wav`.
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.part{path.suffix}")


def pid_of_temp(path: Path) -> int | None:
    """The pid that made a temp path from `temp_path_for`, or None if the name is not one of ours."""
    name = path.name
    if not name.startswith(".") or ".part" not in name:
        return None
    try:
        tag = name.rsplit(".part", 1)[0].rsplit(".", 1)[1]
        return int(tag.split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def move_into_place(temp: Path, final: Path) -> None:
    """fsync then rename: after this returns, `final` is complete even across a power cut."""
    fsync_file(temp)
    os.replace(temp, final)
    try:
        fd = os.open(final.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
