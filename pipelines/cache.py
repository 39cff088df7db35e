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

_CHUNK = 8 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


class FileHasher:
    """sha256 of files, memoised on (size, mtime) in a small JSON file so unchanged files are not re-read.

    Keys are paths relative to `root` when one is given (a weights folder can move), else absolute paths.
    Every newly learnt digest is written at once (atomically), so a killed process keeps what it hashed.
    """

    def __init__(self, memo_path: Path | None = None, root: Path | None = None):
        self._memo_path = memo_path
        self._root = root
        self._memo: dict[str, dict] = {}
        if memo_path and memo_path.is_file():
            try:
                self._memo = json.loads(memo_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._memo = {}  # a damaged memo only costs re-hashing

    def _key(self, path: Path) -> str:
        p = Path(path).resolve()
        return p.relative_to(self._root.resolve()).as_posix() if self._root else str(p)

    def known(self, path: str | Path) -> str | None:
        """The remembered digest, if the file's size and mtime are still those it was hashed at."""
        hit = self._memo.get(self._key(Path(path)))
        if not isinstance(hit, dict):
            return None
        st = Path(path).stat()
        if hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            return hit.get("sha256")
        return None

    def put(self, path: str | Path, digest: str) -> None:
        """Remember `digest` for the file as it is now (e.g. hashed while it was being copied)."""
        st = Path(path).stat()
        self._memo[self._key(Path(path))] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        if self._memo_path:
            atomic_write_text(self._memo_path, json.dumps(self._memo, indent=1, sort_keys=True))

    def forget(self, path: str | Path) -> None:
        self._memo.pop(self._key(Path(path)), None)

    def __call__(self, path: str | Path, reread: bool = False) -> str:
        if not reread and (digest := self.known(path)):
            return digest
        digest = sha256_file(path)
        self.put(path, digest)
        return digest


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
