import threading
import time

import pytest

from pipelines.ahead import Ahead


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
