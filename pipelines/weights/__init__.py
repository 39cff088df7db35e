"""Model weights: the manifest of hub files per engine, weights.lock, download / verify / import, conversion.

Engines call `resolve(engine_id)` for local paths (never the network); a missing file raises
WeightsMissingError (exit 4) naming `talkreel weights download <engine>`.
"""

from pipelines.weights.store import default_weights_dir, locked_revisions, resolve

__all__ = ["default_weights_dir", "locked_revisions", "resolve"]
