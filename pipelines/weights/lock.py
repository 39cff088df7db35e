"""weights.lock: the exact bytes each engine uses (repo, 40-char commit, path, size, sha256 per file).

The lock is JSON at the repository root, next to pyproject.toml, and is committed by maintainers after
`talkreel weights lock ENGINE...` (the only writer; it asks the hub). `download` then fetches exactly those
revisions and refuses any file whose sha256 differs; `verify` and `import` check against it offline.
A repo's files live in one local folder, so every engine that shares a repo must lock the same revision of it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.errors import InputError
from pipelines.weights.manifest import WeightFile, entries

LOCK_VERSION = 1
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def default_lock_path() -> Path:
    # pipelines/weights/lock.py -> the repository root (where pyproject.toml and the committed lock live).
    return Path(__file__).resolve().parents[2] / "weights.lock"


@dataclass(frozen=True)
class LockedFile:
    role: str
    repo: str
    revision: str
    path: str
    size: int
    sha256: str


@dataclass
class Lock:
    engines: dict[str, list[LockedFile]]
    path: Path

    def files(self, engine_id: str) -> list[LockedFile] | None:
        return self.engines.get(engine_id)

    def repo_revisions(self) -> dict[str, tuple[str, str]]:
        """repo -> (revision, the first engine that pins it)."""
        out: dict[str, tuple[str, str]] = {}
        for engine_id, files in self.engines.items():
            for f in files:
                out.setdefault(f.repo, (f.revision, engine_id))
        return out


def read_lock(path: Path | None = None) -> Lock:
    """The lock at `path` (default: the repository's weights.lock); an absent file is an empty lock."""
    path = Path(path) if path is not None else default_lock_path()
    if not path.exists():
        return Lock(engines={}, path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, None, f"not a readable JSON weights lock ({exc})") from None
    if (
        not isinstance(data, dict)
        or data.get("version") != LOCK_VERSION
        or not isinstance(data.get("engines"), dict)
    ):
        raise InputError(
            path, "version", f"expected a weights lock with version {LOCK_VERSION} and an engines table"
        )
    engines: dict[str, list[LockedFile]] = {}
    for engine_id, block in data["engines"].items():
        files = []
        for i, item in enumerate(block.get("files", []) if isinstance(block, dict) else []):
            field = f"engines.{engine_id}.files[{i}]"
            try:
                locked = LockedFile(
                    role=str(item["role"]),
                    repo=str(item["repo"]),
                    revision=str(item["revision"]),
                    path=str(item["path"]),
                    size=int(item["size"]),
                    sha256=str(item["sha256"]).lower(),
                )
            except (KeyError, TypeError, ValueError):
                raise InputError(
                    path, field, "expected role, repo, revision, path, size and sha256"
                ) from None
            if not COMMIT_RE.match(locked.revision):
                raise InputError(path, field + ".revision", "expected a full 40-character commit hash")
            if not SHA256_RE.match(locked.sha256):
                raise InputError(path, field + ".sha256", "expected 64 hex characters")
            files.append(locked)
        engines[engine_id] = files
    return Lock(engines=engines, path=path)


def write_lock(lock: Lock) -> None:
    payload = {
        "version": LOCK_VERSION,
        "comment": "Written by `talkreel weights lock`; do not edit by hand.",
        "engines": {
            engine_id: {"files": [asdict(f) for f in sorted(files, key=lambda f: (f.role, f.repo, f.path))]}
            for engine_id, files in sorted(lock.engines.items())
        },
    }
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = lock.path.with_name(lock.path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, lock.path)


def matches(path: str, pattern: str) -> bool:
    """Whether a repo path is one of a manifest entry's patterns (a glob never crosses a folder)."""
    if not any(ch in pattern for ch in "*?["):
        return path == pattern
    return fnmatch.fnmatchcase(path, pattern) and path.count("/") == pattern.count("/")


def hub_endpoint() -> str | None:
    # Read at call time: huggingface_hub reads HF_ENDPOINT once at import, and a mirror set later must count too.
    return os.environ.get("HF_ENDPOINT") or None


def lock_engines(engine_ids: list[str], lock_path: Path | None = None, revision: str = "main") -> Lock:
    """Resolve `revision` of every repo the engines need on the hub and write their files into the lock.

    Sizes and sha256 come from the hub's paths-info (LFS files carry their sha256); small non-LFS files
    (config.json) are downloaded into a temporary folder and hashed.
    """
    from huggingface_hub import HfApi, hf_hub_download

    from pipelines.cache import sha256_file
    from pipelines.weights.store import hub_errors

    lock = read_lock(lock_path)
    api = HfApi(endpoint=hub_endpoint())
    wanted: dict[str, list[WeightFile]] = {e: list(entries(e)) for e in engine_ids}
    repos = sorted({w.repo for ws in wanted.values() for w in ws})
    fix = "check the network, HF_ENDPOINT and HF_TOKEN (gated repos)"

    resolved: dict[str, str] = {}
    listing: dict[str, list[str]] = {}
    for repo in repos:
        with hub_errors(f"{repo}@{revision}", fix):
            sha = api.model_info(repo, revision=revision).sha
            listing[repo] = list(api.list_repo_files(repo, revision=sha))
        if not sha or not COMMIT_RE.match(sha):
            raise InputError(None, repo, f"the hub gave no commit hash for revision {revision!r}")
        resolved[repo] = sha

    # Engines outside this run that share a repo keep their revision only if it is the same one.
    for repo, sha in resolved.items():
        for engine_id, files in lock.engines.items():
            if engine_id in wanted:
                continue
            if any(f.repo == repo and f.revision != sha for f in files):
                raise InputError(
                    lock.path,
                    f"engines.{engine_id}",
                    f"also uses {repo} at another revision; lock them together: "
                    f"talkreel weights lock {' '.join([*engine_ids, engine_id])}",
                )

    meta_cache: dict[tuple[str, str], tuple[int, str]] = {}
    with tempfile.TemporaryDirectory(prefix="talkreel-lock-") as tmp, hub_errors("file metadata", fix):
        for engine_id, ws in wanted.items():
            files: list[LockedFile] = []
            for w in ws:
                sha = resolved[w.repo]
                paths = sorted(p for p in listing[w.repo] if any(matches(p, pat) for pat in w.patterns))
                missing = [pat for pat in w.patterns if not any(matches(p, pat) for p in paths)]
                if missing:
                    raise InputError(
                        None, f"{engine_id}.{w.role}", f"{w.repo}@{sha[:12]} has no file matching {missing}"
                    )
                todo = [p for p in paths if (w.repo, p) not in meta_cache]
                if todo:
                    for info in api.get_paths_info(w.repo, todo, revision=sha):
                        lfs = getattr(info, "lfs", None)
                        if lfs is not None and getattr(lfs, "sha256", None):
                            meta_cache[(w.repo, info.path)] = (int(info.size), str(lfs.sha256).lower())
                        else:
                            local = hf_hub_download(
                                w.repo,
                                info.path,
                                revision=sha,
                                local_dir=Path(tmp) / w.repo,
                                endpoint=hub_endpoint(),
                            )
                            meta_cache[(w.repo, info.path)] = (int(info.size), sha256_file(Path(local)))
                for p in paths:
                    size, digest = meta_cache[(w.repo, p)]
                    files.append(LockedFile(w.role, w.repo, sha, p, size, digest))
            lock.engines[engine_id] = files
    write_lock(lock)
    return lock
