"""Make the next chunk while the pipeline works on this one.

    source = MyChunkSource(...)                    # make(c) reads frames, computes windows, crops on the device
    ahead = Prefetch(SideStream(device).wrap(source.make), chunks_from(start, n, ch), enabled=engine.prefetch)
    for chunk in ahead:
        adopt(chunk.tensors)                       # tensors made on the side stream, used on the current one
        ...pipeline...
    engine.stats["prefetch_wait_s"] = ahead.waited

With `enabled`, one background thread (pipelines.ahead.Ahead) makes chunk c + 1 while the caller works on chunk c,
and no further: at most two chunks exist at a time (the caller's and the one made ahead), so memory does not grow
with the prefetch. The frames must not depend on it (a test per engine: prefetch on and off give the same frames).
On CUDA, `SideStream` makes the chunk's uploads and device work on a stream of its own, so they overlap the
pipeline's kernels; the chunk is complete (synchronised) when handed over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from pipelines.ahead import Ahead

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741

_POLL_S = 0.1  # how often the worker, waiting to make the next item, checks whether the caller stopped


class Prefetch(Iterable[T]):
    """make(item) for each item, in order; with `enabled`, made one item ahead of the caller on a worker thread.
    `waited`: seconds the caller spent waiting for an item (the first one always waits)."""

    def __init__(
        self, make: Callable[[I], T], items: Iterable[I], enabled: bool = True, name: str = "prefetch"
    ):
        self.make = make
        self.items = items
        self.enabled = bool(enabled)
        self.name = name
        self.waited = 0.0

    def __iter__(self) -> Iterator[T]:
        if not self.enabled:
            for item in self.items:
                t = time.perf_counter()
                made = self.make(item)
                self.waited += time.perf_counter() - t
                yield made
            return
        permit = threading.Semaphore(1)  # one item may be made beyond the one the caller holds
        stopped = threading.Event()

        def made() -> Iterator[T]:
            for item in self.items:
                while not permit.acquire(timeout=_POLL_S):
                    if stopped.is_set():
                        return
                yield self.make(item)

        ahead = Ahead(made(), depth=1, name=self.name)
        try:
            for value in ahead:
                permit.release()  # the caller took an item: the worker may make the next one
                yield value
        finally:
            stopped.set()
            ahead.close()
            self.waited += ahead.waited


class SideStream:
    """Run a prefetch step on a CUDA stream of its own (on other devices: directly). Make one per render."""

    def __init__(self, device: Any):
        import torch

        self.device = torch.device(device)
        self.stream = None

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.device.type != "cuda":
            return fn(*args)
        import torch

        if self.stream is None:
            self.stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(self.stream):
            out = fn(*args)
        self.stream.synchronize()
        return out

    def wrap(self, fn: Callable[..., T]) -> Callable[..., T]:
        return lambda *args: self.run(fn, *args)


def adopt(tensors: Iterable[Any]) -> None:
    """Hand CUDA tensors made on another stream (SideStream) to the current stream (allocator bookkeeping, so their
    memory is not reused while the current stream still reads them). No-op for CPU tensors."""
    import torch

    current = None
    for t in tensors:
        if t is not None and t.is_cuda:
            current = current or torch.cuda.current_stream(t.device)
            t.record_stream(current)
