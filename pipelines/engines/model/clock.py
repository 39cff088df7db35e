"""Seconds per stage of a render, summed, from any thread.

clock = StageClock(sync=profile)      # sync: wait for the device before and after each stage (bench figures)
with clock("unet"):
    ...
engine.stats["stages"] = clock.seconds
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class StageClock:
    """Seconds per stage, summed over a render, from any thread. With `sync`, each stage waits for the device's
    queued work first and last (figures for a bench; it serialises the GPU)."""

    def __init__(self, sync: bool = False):
        self.sync = sync
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._wait()
        t = time.perf_counter()
        try:
            yield
        finally:
            self._wait()
            self.add(stage, time.perf_counter() - t)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def _wait(self) -> None:
        if self.sync:
            import torch

            if torch.cuda.is_available():
                torch.cuda.current_stream().synchronize()
