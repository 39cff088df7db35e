"""The engine contract and the registry of engines.

An engine never writes files, never reads the job YAML, never prints: `prepare` does the heavy per-persona
work (cacheable), `render` yields frames `start .. speech.n_frames - 1` in order (start > 0 resumes a killed render from
a chunk checkpoint and must give the same frames as an uninterrupted render) and reports progress through a
callback. Engines are created by name through the registry, which imports an engine's module only when it is
used, so the CPU preview path never pays for diffusers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipelines.expression.track import ExpressionTrack
from pipelines.speech.track import Speech

Progress = Callable[[int], None]
"""Called with the number of frames finished so far."""


@dataclass(frozen=True)
class Frame:
    """One output frame: RGB uint8 (H, W, 3); `face_found` is False where the source frame passed through."""

    image: np.ndarray
    face_found: bool = True


@dataclass(frozen=True)
class RenderSettings:
    """What an engine needs to know about the output, plus its own validated settings from the job."""

    fps: float
    size: tuple[int, int] | None  # (width, height); None = the engine's natural framing
    seed: int
    engine: Any  # the job's engine-specific pydantic settings (pipelines.spec.engines)
    loop: str = "pingpong"  # how a video persona shorter than the speech goes on (the persona's `loop`)


def loop_frame(i: int, n: int, loop: str, ends_twice: bool = False) -> int:
    """The source frame shown at output frame i of a video persona of n frames: "repeat" starts it over,
    "hold" keeps its last frame, "pingpong" plays it forwards and backwards, 0 1 2 1 0 1 2 ..., or with
    `ends_twice` showing each end twice, 0 1 2 2 1 0 0 1 ... (upstream LatentSync's loop, which LatentSync keeps)."""
    if n <= 1:
        return 0
    if loop == "repeat":
        return i % n
    if loop == "hold":
        return min(i, n - 1)
    if ends_twice:
        turn, pos = divmod(i, n)
        return pos if turn % 2 == 0 else n - 1 - pos
    period = 2 * n - 2
    pos = i % period
    return pos if pos < n else period - pos


class ArrayCache(Protocol):
    """Content-addressed cache of named numpy arrays (no pickle): persona preparation lives here."""

    def get_or_compute(
        self, namespace: str, key: str, compute: Callable[[], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]: ...


@runtime_checkable
class Engine(Protocol):
    name: str

    def prepare(self, persona: Any, settings: RenderSettings, cache: ArrayCache) -> Any: ...

    def frame_size(self, prepared: Any) -> tuple[int, int]:
        """(width, height) of the frames `render` yields: the output is laid out before the first frame exists."""
        ...

    # Optional, looked up with getattr (not part of the isinstance check): `face_point(prepared)`, where the
    # persona's picked face is in the first frame (fractions of width and height; None: not known), for an engine
    # that reframes the source (a portrait crop), so QC measures that person in the output (render._qc_face).
    # Without it, QC applies the persona's `face` pick to the output as it applies to the source.

    def render(
        self,
        prepared: Any,
        speech: Speech,
        expression: ExpressionTrack,
        settings: RenderSettings,
        progress: Progress | None = None,
        start: int = 0,
    ) -> Iterator[Frame]: ...


# name -> "module:factory"; the factory takes keyword options (e.g. device, weights_dir) and returns an Engine.
# An engine owns its device: model engines default to CUDA when it is available.
_REGISTRY: dict[str, str] = {
    "preview": "pipelines.engines.preview.engine:PreviewEngine",
    "latentsync-1.5": "pipelines.engines.latentsync.engine:LatentSyncEngine.v15",
    "latentsync-1.6": "pipelines.engines.latentsync.engine:LatentSyncEngine.v16",
    "echomimic-v2": "pipelines.engines.echomimic_v2.engine:EchoMimicV2Engine.full",
    "echomimic-v2-acc": "pipelines.engines.echomimic_v2.engine:EchoMimicV2Engine.acc",
    "musetalk-1.5": "pipelines.engines.musetalk.engine:MuseTalkEngine",
    "echomimic-v3-flash": "pipelines.engines.echomimic_v3.engine:EchoMimicV3Engine.flash",
    "echomimic-v3-preview": "pipelines.engines.echomimic_v3.engine:EchoMimicV3Engine.preview",
}


def engine_names() -> list[str]:
    return sorted(_REGISTRY)


def create_engine(name: str, **options: Any) -> Engine:
    """Create the engine called `name`; unknown names raise KeyError listing the known ones."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown engine {name!r}; known: {', '.join(engine_names())}") from None
    module_name, attr_path = target.split(":")
    obj: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj(**options)
