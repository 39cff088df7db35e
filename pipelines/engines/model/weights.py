"""An engine's weight files through pipelines.weights (the manifest, the store, weights.lock).

    paths = resolve_weights(engine_id, weights_dir, lock_path)   # {role: Path}; fails with the command to run
    info = weights_info(engine_id, paths, lock_path)             # for describe() / the job record

Weights come only from `talkreel weights download` / `weights import` (no network at render time): resolution
looks on disk and raises the store's error (exit 4, naming the command) when a file is missing or unconverted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def resolve_weights(
    engine_id: str, weights_dir: str | Path | None = None, lock_path: str | Path | None = None
):
    """{role: path} of the engine's converted weight files (pipelines.weights.store.resolve)."""
    from pipelines.weights.store import resolve

    return resolve(
        engine_id, Path(weights_dir) if weights_dir else None, Path(lock_path) if lock_path else None
    )


def weights_info(
    engine_id: str, paths: dict[str, Path], lock_path: str | Path | None = None
) -> list[dict[str, Any]]:
    """Each weight file with its hub repo and the revision weights.lock pins (None when unlocked)."""
    from pipelines.weights.manifest import entries
    from pipelines.weights.store import locked_revisions

    revisions = locked_revisions(engine_id, Path(lock_path) if lock_path else None)
    repos = {w.role: w.repo for w in entries(engine_id)}
    return [
        {"role": role, "file": str(path), "repo": repos.get(role), "revision": revisions.get(repos.get(role))}
        for role, path in paths.items()
    ]
