"""An output published as one unit: the MP4, its sidecars (captions, contact sheet) and its record.

Everything is first made in the job's work folder under its final name (the stage), so a failure before the
publish (disk full, a kill during QC) leaves the previous complete set untouched beside no stray file. The
publish then moves the staged files into place, removes the previous set's sidecars the new set no longer has,
and replaces the record last. The record names the MP4's size and sha256, so the short window between the
MP4's rename and the record's (or a kill inside it) is seen as a mismatch, never as an up-to-date output; the
staged record stays in the work folder until the publish is done, so the next run finishes the publish instead
of rendering again.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from pipelines.media.atomic import move_into_place

SIDECAR_SUFFIXES = (".srt", ".vtt", ".contact.png")


def record_path_for(out_path: Path) -> Path:
    return out_path.with_suffix(".json")


def read_record(out_path: Path) -> dict[str, Any]:
    """The record beside `out_path`, or {} when there is none (or it is not readable JSON)."""
    return _read_json(record_path_for(out_path))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_facts(path: Path) -> dict[str, Any]:
    """What a record says about its MP4, so a reader can tell that they belong together."""
    return {"bytes": path.stat().st_size, "sha256": file_digest(path)}


def matches_record(out_path: Path, record: dict[str, Any], digest=file_digest) -> bool:
    """Whether `out_path` is the very file `record` describes (same size, then same sha256)."""
    facts = record.get("output_file")
    if not isinstance(facts, dict):
        return False  # a record from before records named their file's size and hash
    try:
        size = out_path.stat().st_size
    except OSError:
        return False
    return size == facts.get("bytes") and digest(out_path) == facts.get("sha256")


class Stage:
    """The files of one output set under their final names, inside the job's work folder."""

    def __init__(self, work: Path, out_path: Path):
        self.dir = work
        self.out_path = out_path

    def path(self, final: Path) -> Path:
        return self.dir / final.name

    @property
    def mp4(self) -> Path:
        return self.path(self.out_path)

    @property
    def record(self) -> Path:
        return self.path(record_path_for(self.out_path))

    def staged_record(self) -> dict[str, Any]:
        """The staged record of an earlier run whose publish did not finish, else {}."""
        return _read_json(self.record)

    def publish(self, record: dict[str, Any]) -> None:
        """Move the set into place; `record["sidecars"]` lists the sidecars' final paths. Safe to repeat
        after a kill at any point (a file already moved is not staged any more)."""
        from pipelines.cache import atomic_write_text

        new_sidecars = {Path(p) for p in record["sidecars"]}
        if not self.record.is_file():
            atomic_write_text(self.record, json.dumps(record, indent=2, default=str))
        for final in [self.out_path, *sorted(new_sidecars)]:
            staged = self.path(final)
            if staged.is_file():
                move_into_place(staged, final)
        previous = read_record(self.out_path)
        for old in _sidecar_paths(previous, self.out_path):
            if old not in new_sidecars:
                old.unlink(missing_ok=True)
        move_into_place(self.record, record_path_for(self.out_path))


def _sidecar_paths(record: dict[str, Any], out_path: Path) -> list[Path]:
    """The previous record's sidecars that are this output's (same folder, `<stem>` + a sidecar suffix)."""
    names = {Path(str(p)).name for p in record.get("sidecars") or [] if isinstance(p, str)}
    own = {out_path.stem + suffix for suffix in SIDECAR_SUFFIXES}
    return [out_path.parent / name for name in sorted(names & own)]


def remove_stale_work(out_path: Path, keep: Path) -> None:
    """Work folders of earlier versions of this output's job (another content hash): an interrupted render
    of a job that has since been edited can never resume, so its segments only take space."""
    root = keep.parent
    if not root.is_dir():
        return
    pattern = re.compile(re.escape(out_path.stem) + r"-[0-9a-f]{16}")
    for folder in root.iterdir():
        if folder != keep and folder.is_dir() and pattern.fullmatch(folder.name):
            shutil.rmtree(folder, ignore_errors=True)


def job_key(job_path: Path, project_root: Path) -> str:
    """How a record names its job: relative to the project root, so a moved project keeps its outputs."""
    if job_path.is_relative_to(project_root):
        return job_path.relative_to(project_root).as_posix()
    return str(job_path)
