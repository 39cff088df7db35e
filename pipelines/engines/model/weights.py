"""An engine's weight files through pipelines.weights (the manifest, the store, weights.lock).

Every model engine sets its weights up the same way, with EngineWeights:

    self.weights = EngineWeights(engine_id, weights_dir, lock_path, components)  # resolves the files, or not
    comps = self.weights.components or self._load_components()   # the engine loads from self.weights.paths
    info.update(self.weights.describe())                         # describe(): {"weights": [...]} from disk

The functions below it:

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


class EngineWeights:
    """Where a model engine's modules come from: ready `components` (a dict of modules from a test or a Python
    caller; no weights folder is looked at), else the engine's converted files, resolved on disk when the engine is
    made so that missing or unconverted weights fail there (exit 4, naming the command to run)."""

    def __init__(
        self,
        engine_id: str,
        weights_dir: str | Path | None = None,
        lock_path: str | Path | None = None,
        components: dict[str, Any] | None = None,
    ):
        self.engine_id = engine_id
        self.components = components
        self.lock_path = Path(lock_path) if lock_path else None
        self.paths: dict[str, Path] = {}
        if components is None:
            self.paths = resolve_weights(engine_id, weights_dir, lock_path)

    def describe(self) -> dict[str, Any]:
        """{"weights": each file with its repo and pinned revision} for an engine's describe(); {} with components."""
        return {"weights": weights_info(self.engine_id, self.paths, self.lock_path)} if self.paths else {}
