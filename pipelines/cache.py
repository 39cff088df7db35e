"""Content addressing: file hashes, the job hash that decides "up to date", and the persona array cache.

The job hash covers everything that changes the output: the job spec, the persona spec, the bytes of every
input file, the engine and its settings, and the code version (a hash of this package's sources, so a
code change re-renders instead of serving stale output).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

import pipelines

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


class FileHasher:
    """sha256 of files, memoised on (path, size, mtime) in a small JSON file so unchanged inputs are not re-read."""

    def __init__(self, memo_path: Path | None = None):
        self._memo_path = memo_path
        self._memo: dict[str, list] = {}
        if memo_path and memo_path.is_file():
            try:
                self._memo = json.loads(memo_path.read_text())
            except (OSError, ValueError):
                self._memo = {}  # a damaged memo only costs re-hashing
        self._dirty = False

    def __call__(self, path: str | Path) -> str:
        p = Path(path).resolve()
        st = p.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        hit = self._memo.get(str(p))
        if hit and hit[:2] == stamp:
            return hit[2]
        digest = sha256_file(p)
        self._memo[str(p)] = [*stamp, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        if self._memo_path and self._dirty:
            atomic_write_text(self._memo_path, json.dumps(self._memo))
            self._dirty = False


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version plus a hash of every source file of `pipelines` (computed once per process)."""
    root = Path(pipelines.__file__).parent
    h = hashlib.sha256(pipelines.__version__.encode())
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return f"{pipelines.__version__}+{h.hexdigest()[:12]}"


def hash_payload(payload: Any) -> str:
    """sha256 of a JSON-able payload in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def hash_files(paths: Iterable[Path], hasher: Callable[[Path], str]) -> dict[str, str]:
    return {str(p): hasher(p) for p in sorted({Path(p) for p in paths})}


def atomic_write_text(path: Path, text: str) -> None:
    """Write next to the target under a unique name, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DiskArrayCache:
    """The engines' ArrayCache: named numpy arrays per (namespace, key) as .npz files, loaded without pickle."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def get_or_compute(
        self, namespace: str, key: str, compute: Callable[[], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        path = self.root / namespace / f"{key}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    return {name: data[name] for name in data.files}
            except (OSError, ValueError):
                path.unlink(missing_ok=True)  # a torn or foreign file: recompute
        arrays = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return arrays


def default_cache_root() -> Path:
    env = os.environ.get("TALKREEL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "talkreel"
