import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.ahead import Ahead, FramesInChild, InChild, InThread
from pipelines.engines.base import Frame
from pipelines.errors import InputError


def test_items_arrive_in_order_and_times_are_counted():
    def slow():
        for i in range(5):
            time.sleep(0.01)
            yield i

    with Ahead(slow(), depth=2) as items:
        assert list(items) == [0, 1, 2, 3, 4]
        assert list(items) == []  # exhausted stays exhausted
    assert items.busy >= 0.04 and items.waited > 0.0


def test_an_error_reaches_the_caller_after_the_items_before_it():
    def failing():
        yield 1
        yield 2
        raise ValueError("frame 2 broke")

    got = []
    with Ahead(failing(), depth=4) as items, pytest.raises(ValueError, match="frame 2 broke"):
        for item in items:
            got.append(item)
    assert got == [1, 2]


def test_a_caller_that_stops_early_stops_the_worker_and_closes_the_iterator():
    made, closed_on = [], []

    def endless():
        try:
            i = 0
            while True:
                made.append(i)
                yield i
                i += 1
        finally:
            closed_on.append(threading.current_thread().name)

    items = Ahead(endless(), depth=3, name="maker")
    assert next(items) == 0 and next(items) == 1
    time.sleep(0.05)  # the worker fills the queue and blocks
    t0 = time.perf_counter()
    items.close()
    assert time.perf_counter() - t0 < 1.0
    assert closed_on == ["maker"]  # the generator's finally ran, on the worker's thread
    assert len(made) <= 2 + 3 + 2  # taken, queued, and the one or two in hand when it stopped
    with pytest.raises(StopIteration):
        next(items)


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        Ahead([], depth=0)


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")


def _frames(n, shape=(6, 8, 3), fail_at=None, error=None):
    for i in range(n):
        if i == fail_at:
            raise error
        yield Frame(np.full(shape, i, np.uint8), i % 3 != 0)


@needs_fork
def test_frames_made_in_a_child_arrive_in_order_with_their_flags():
    got = []
    with FramesInChild(_frames(10), (6, 8, 3), depth=3) as frames:
        for frame in frames:
            got.append((int(frame.image[0, 0, 0]), frame.face_found, frame.image.shape))
            assert np.all(frame.image == frame.image[0, 0, 0])  # the slot held one whole frame
    assert got == [(i, i % 3 != 0, (6, 8, 3)) for i in range(10)]
    assert frames.busy > 0.0


@needs_fork
def test_the_childs_error_is_raised_here_as_itself():
    error = InputError("persona.png", "source", "no face found in the persona image")
    got = []
    with FramesInChild(_frames(5, fail_at=3, error=error), (6, 8, 3)) as frames:
        with pytest.raises(InputError, match="no face found") as raised:
            for frame in frames:
                got.append(int(frame.image[0, 0, 0]))
    assert got == [0, 1, 2] and raised.value.field == "source"


@needs_fork
def test_closing_early_stops_the_child_and_a_killed_child_is_an_error():
    def endless():
        i = 0
        while True:
            yield Frame(np.zeros((4, 4, 3), np.uint8), True)
            i += 1

    frames = FramesInChild(endless(), (4, 4, 3), depth=2)
    next(frames)
    t0 = time.perf_counter()
    frames.close()
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(ProcessLookupError):
        os.kill(frames.pid, 0)  # reaped

    frames = FramesInChild(endless(), (4, 4, 3), depth=2)
    next(frames)
    os.kill(frames.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="ended without a word"):
        for _ in range(10):
            next(frames)
    frames.close()


def _priority_and_sum(*values):
    return os.getpriority(os.PRIO_PROCESS, 0), sum(values)


def _fails():
    raise InputError("speech.wav", "audio", "no audio stream")


def _waits_then_cleans_up(marker):
    try:
        time.sleep(30)
    finally:
        Path(marker).write_text("cleaned up")


@pytest.mark.parametrize("kind", [InThread, pytest.param(InChild, marks=needs_fork)])
def test_background_work_hands_back_its_result_or_its_error(kind):
    assert kind(_priority_and_sum, 1, 2, 3).result()[1] == 6
    with pytest.raises(InputError, match="no audio stream") as raised:
        kind(_fails).result()
    assert raised.value.field == "audio"


@needs_fork
def test_a_child_runs_at_the_priority_asked_for():
    own = os.getpriority(os.PRIO_PROCESS, 0)
    priority, _ = InChild(_priority_and_sum, nice=5).result()
    assert priority == min(own + 5, 19)
    assert os.getpriority(os.PRIO_PROCESS, 0) == own  # this process keeps its own


@needs_fork
def test_aborting_a_child_stops_it_and_its_cleanup_runs(tmp_path):
    marker = tmp_path / "marker"
    work = InChild(_waits_then_cleans_up, marker)
    time.sleep(0.3)  # inside the sleep
    t0 = time.perf_counter()
    work.abort()
    assert time.perf_counter() - t0 < 5.0
    assert marker.read_text() == "cleaned up"
    with pytest.raises(ProcessLookupError):
        os.kill(work.pid, 0)  # reaped


@needs_fork
def test_a_child_killed_outright_is_an_error():
    work = InChild(_waits_then_cleans_up, "/nonexistent/marker")
    os.kill(work.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="ended without a result"):
        work.result()


def test_a_render_runs_its_libraries_on_one_thread_each_and_a_forked_child_inherits_it():
    # the render's stages are parallel by process: OpenCV's pool and OpenBLAS's (whose idle workers spin) are
    # held to one thread while frames are made, in the engine's forked child too, and restored after
    import cv2
    from threadpoolctl import threadpool_info

    from pipelines.render import _library_threads

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    def seen_in_child():
        yield Frame(np.array([[[cv2.getNumThreads(), max(blas_threads()), 0]]], np.uint8), True)

    cv2.setNumThreads(2)
    before = blas_threads()
    with _library_threads(1):
        assert cv2.getNumThreads() == 1 and blas_threads() == {1}
        with FramesInChild(seen_in_child(), (1, 1, 3)) as child:
            assert next(iter(child)).image[0, 0, :2].tolist() == [1, 1]
    assert cv2.getNumThreads() == 2 and blas_threads() == before
