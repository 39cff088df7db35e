"""An iterator's items made on a worker thread, a few ahead of the caller.

The render loop uses it to run the engine next to the compositor and the encoder pipe: OpenCV, numpy and torch
release the GIL in their heavy calls, so an engine frame and the compositing of the previous one proceed on two
cores at once. Errors raised by the iterator reach the caller at the item where they happened; a caller that stops
early (an error of its own, Ctrl-C) stops the worker after its current item, and the iterator is closed on the
worker's thread (a generator's `finally` blocks run there).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_S = 0.1  # how often a worker blocked on a full queue checks whether the caller stopped


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class Ahead(Generic[T]):
    """Iterate `items` on a worker thread, at most `depth` items ahead. Use as a context manager (or call
    close()). `busy`: seconds the worker spent making items; `waited`: seconds the caller spent waiting for one."""

    def __init__(self, items: Iterable[T], depth: int = 4, name: str = "ahead"):
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self.busy = 0.0
        self.waited = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        it = iter(self._items)
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    self._put(_DONE)
                    return
                finally:
                    self.busy += time.perf_counter() - t0
                if not self._put((item,)):
                    return
        except BaseException as exc:  # handed to the caller, raised there
            self._put(_Failed(exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        t0 = time.perf_counter()
        entry = self._queue.get()
        self.waited += time.perf_counter() - t0
        if entry is _DONE:
            self._finished = True
            raise StopIteration
        if isinstance(entry, _Failed):
            self._finished = True
            raise entry.error
        return entry[0]

    def close(self) -> None:
        """Stop the worker (after the item it is making) and wait for it."""
        self._finished = True
        self._stop.set()
        while self._thread.is_alive():
            try:  # make room, so a worker blocked on a full queue sees the stop at once
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=_POLL_S)

    def __enter__(self) -> Ahead[T]:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
