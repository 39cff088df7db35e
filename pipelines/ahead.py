"""An iterator's items made ahead of the caller: on a worker thread (Ahead), or an engine's frames in a forked
child process (FramesInChild).

The render loop uses it to run the engine next to the compositor and the encoder pipe: OpenCV, numpy and torch
release the GIL in their heavy calls, so an engine frame and the compositing of the previous one proceed on two
cores at once. Errors raised by the iterator reach the caller at the item where they happened; a caller that stops
early (an error of its own, Ctrl-C) stops the worker after its current item, and the iterator is closed on the
worker's thread (a generator's `finally` blocks run there).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

import numpy as np

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


class FramesInChild:
    """An engine's frames made in a forked child process, up to `depth` ahead, handed over through shared memory.

    Threads share one GIL: the preview engine and the compositor, both a mix of OpenCV calls and Python, held
    each other up on two cores (bench/preview_speed.py: ~6 % more frames/s in a child process). Only for engines
    whose state survives fork (CPU only: no CUDA context, no OpenMP pool; see the engines' `forkable`), and only
    where fork exists. Call it with OpenCV's own pool at one thread (the child cannot use the parent's workers).

    Each frame's image is a view into a shared slot, valid until the next frame is taken. The child's error is
    raised here as the same exception (or a RenderError with its traceback when it does not pickle). `busy`: the
    child's CPU seconds; `waited`: seconds the caller waited for a frame.
    """

    def __init__(self, frames: Iterable, shape: tuple[int, int, int], depth: int = 4):
        import mmap

        self.shape = tuple(int(v) for v in shape)
        self._size = int(np.prod(self.shape))
        self._slots = mmap.mmap(-1, depth * self._size)  # anonymous and shared: the child writes, we read
        ready_r, ready_w = os.pipe()  # child -> parent: a frame is in a slot (or the end, or an error)
        free_r, free_w = os.pipe()  # parent -> child: a slot may be written again
        self.pid = os.fork()
        if self.pid == 0:  # the child: make the frames, then leave without running the parent's exit code
            _keep_only(ready_w, free_r)
            code = self._produce(frames, depth, ready_w, free_r)
            os._exit(code)
        os.close(ready_w)
        os.close(free_r)
        self._ready, self._free = ready_r, free_w
        self._held: int | None = None
        self._finished = False
        self.busy = 0.0
        self.waited = 0.0

    def _produce(self, frames: Iterable, depth: int, ready: int, free: int) -> int:
        t0 = time.process_time()
        try:
            unused = list(range(depth))
            for frame in frames:
                slot = unused.pop() if unused else _MESSAGE.unpack(_read(free, _MESSAGE.size))[0]
                view = np.frombuffer(self._slots, np.uint8, self._size, slot * self._size).reshape(self.shape)
                view[...] = frame.image
                os.write(ready, _MESSAGE.pack(slot, int(frame.face_found), 0.0))
            os.write(ready, _MESSAGE.pack(_END_SLOT, 0, time.process_time() - t0))
            return 0
        except BrokenPipeError:  # the parent is gone or stopped listening
            return 1
        except BaseException as exc:
            payload = _pickled_error(exc)
            try:
                os.write(ready, _MESSAGE.pack(_ERROR_SLOT, len(payload), 0.0) + payload)
            except OSError:
                pass
            return 1

    def __iter__(self):
        return self

    def __next__(self):
        from pipelines.engines.base import Frame
        from pipelines.errors import RenderError

        if self._finished:
            raise StopIteration
        if self._held is not None:  # the caller is done with the previous frame: its slot may be reused
            slot, self._held = self._held, None
            try:
                os.write(self._free, _MESSAGE.pack(slot, 0, 0.0))
            except BrokenPipeError:  # the child has made its last frame and left; what it sent is still here
                pass
        t0 = time.perf_counter()
        try:
            slot, flag, value = _MESSAGE.unpack(_read(self._ready, _MESSAGE.size))
        except EOFError:
            self._finished = True
            raise RuntimeError("the engine's child process ended without a word (killed?)") from None
        finally:
            self.waited += time.perf_counter() - t0
        if slot == _END_SLOT:
            self._finished = True
            self.busy = value
            raise StopIteration
        if slot == _ERROR_SLOT:
            self._finished = True
            payload = _read(self._ready, flag)
            try:
                error = pickle.loads(payload)  # our own child's exception object
            except Exception as exc:
                raise RenderError(
                    f"the engine failed in its child process (its error did not cross: {exc})"
                ) from None
            raise error
        self._held = slot
        image = np.frombuffer(self._slots, np.uint8, self._size, slot * self._size).reshape(self.shape)
        return Frame(image, bool(flag))

    def close(self) -> None:
        """Stop the child (if it is still making frames) and reap it."""
        self._finished = True
        for fd in (self._ready, self._free):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)

    def __enter__(self) -> FramesInChild:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class InChild:
    """fn(*args) run once in a forked child process; `result()` waits for it and returns what it returned (or
    raises what it raised), handed back pickled.

    For background work whose only product is its result and the files it writes (the render's output audio
    track): unlike a thread it never holds the GIL the render loop needs, and with `nice` it runs at a lower
    priority, in the CPU time the render leaves free. Only where fork exists (see `in_background`). `abort()`
    stops it: SIGTERM, which the child turns into SystemExit, so fn's own cleanup (a `finally`, an encoder's
    abort) runs.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, nice: int = 0):
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            _keep_only(write)
            os._exit(_run_and_report(fn, args, write, nice))
        os.close(write)
        self._read = read
        self._outcome: bytes | None = None

    def result(self) -> Any:
        if self._outcome is None:
            chunks = []
            while chunk := os.read(self._read, 1 << 16):
                chunks.append(chunk)
            os.close(self._read)
            os.waitpid(self.pid, 0)
            self._outcome = b"".join(chunks)
        if not self._outcome:
            raise RuntimeError("the background process ended without a result (killed?)")
        value = pickle.loads(self._outcome[1:])
        if self._outcome[:1] == _RAISED:
            raise value
        return value

    def abort(self) -> None:
        """Stop the child (if it is still running) and reap it; its result is dropped."""
        if self._outcome is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            with contextlib.suppress(BaseException):
                self.result()


class InThread:
    """InChild's interface on a thread, where there is no fork: `abort()` waits for fn to finish (a thread
    cannot be stopped) and drops its result."""

    def __init__(self, fn: Callable[..., Any], *args: Any, nice: int = 0):
        self._future: Future = Future()

        def run() -> None:
            try:
                self._future.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever asks for the result
                self._future.set_exception(exc)

        threading.Thread(target=run, name=getattr(fn, "__name__", "background"), daemon=True).start()

    def result(self) -> Any:
        return self._future.result()

    def abort(self) -> None:
        self._future.exception()


def in_background(fn: Callable[..., Any], *args: Any, nice: int = 0) -> InChild | InThread:
    """fn(*args) in a forked child process where fork exists (at `nice`), else on a thread."""
    return (InChild if hasattr(os, "fork") else InThread)(fn, *args, nice=nice)


def _run_and_report(fn: Callable[..., Any], args: tuple, write: int, nice: int) -> int:
    signal.signal(signal.SIGTERM, _exit_on_term)
    if nice:
        os.nice(nice)
    try:
        payload = _RETURNED + pickle.dumps(fn(*args))
    except BaseException as exc:
        payload = _RAISED + _pickled_error(exc)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(write, view) :]
    except OSError:  # the parent is gone
        return 1
    return 0


_RETURNED, _RAISED = b"R", b"E"  # the first byte of InChild's report


def _exit_on_term(_signum, _frame) -> None:
    raise SystemExit(1)


def _keep_only(*fds: int) -> None:
    """In a forked child: close every inherited file descriptor above stdio except `fds`. An inherited copy of
    another pipe's write end (an encoder's stdin, a decoder's stdout being opened on another thread) would keep
    its reader from ever seeing the end."""
    low = 3
    for fd in sorted(fds):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _pickled_error(exc: BaseException) -> bytes:
    """The exception pickled, or a RuntimeError with its traceback where it does not pickle."""
    try:
        return pickle.dumps(exc)
    except Exception:
        return pickle.dumps(RuntimeError(traceback.format_exc()))


_MESSAGE = struct.Struct("iid")  # slot (or _END_SLOT / _ERROR_SLOT), face found (or payload size), seconds
_END_SLOT = -1
_ERROR_SLOT = -2


def _read(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data
