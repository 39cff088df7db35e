"""The shared model-engine machinery (pipelines/engines/model): chunk grid, per-chunk seeds, prefetch, caches."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from pipelines.engines.model.chunks import (
    chunk_frames,
    chunk_generator,
    chunks_from,
    first_overlapping,
    plan_overlapping,
)
from pipelines.engines.model.device import place_modules, resolve_dtype
from pipelines.engines.model.latent_cache import LatentCache
from pipelines.engines.model.prefetch import Prefetch


def test_the_grid_starts_at_frame_zero_whatever_the_start():
    assert list(chunks_from(0, 40, 16)) == [0, 1, 2]
    assert list(chunks_from(21, 40, 16)) == [1, 2]  # frame 21 is in chunk 1 (16..31)
    assert list(chunks_from(32, 40, 16)) == [2]
    assert chunk_frames(2, 16, 40) == list(range(32, 40))  # the short last chunk
    assert list(chunks_from(40, 40, 16)) == []
    with pytest.raises(ValueError, match="chunk_frames"):
        chunks_from(0, 10, 0)


def test_overlapping_chunks_follow_the_grid_without_changes():
    # 81-frame chunks sharing 8 frames: starts every 73 frames, the last chunk as long as the clip needs
    assert plan_overlapping(200, 81, 8) == [(0, 81), (73, 81), (146, 54)]
    assert plan_overlapping(81, 81, 8) == [(0, 81)]
    assert plan_overlapping(3, 81, 8) == [(0, 3)]


def test_overlapping_chunks_start_at_changes_far_enough_apart():
    # changes at 30 and 100 become chunk starts; 105 is too close to 100 (a quarter chunk: 20 frames)
    plan = plan_overlapping(300, 81, 8, changes=[30, 100, 105])
    starts = [a for a, _ in plan]
    assert starts[:3] == [0, 30, 100]
    assert all(plan[i][0] + plan[i][1] - plan[i + 1][0] == 8 for i in range(len(plan) - 1))  # same overlap
    assert all(used <= 81 for _, used in plan) and sum(plan[-1]) == 300
    # a change in the frames the next grid chunk shares with this one lands in that cross-fade
    assert [a for a, _ in plan_overlapping(300, 81, 8, changes=[76])][:2] == [0, 73]
    assert [a for a, _ in plan_overlapping(300, 81, 8, changes=[10])][:2] == [0, 73]  # too close to 0


def test_a_resume_begins_with_the_chunk_whose_cross_fade_it_needs():
    plan = [(0, 38), (30, 78), (100, 81)]
    assert first_overlapping(plan, 0, 8) == 0
    assert first_overlapping(plan, 29, 8) == 0
    assert first_overlapping(plan, 33, 8) == 0  # 30..37 fade from chunk 0 into chunk 1
    assert first_overlapping(plan, 38, 8) == 1
    assert first_overlapping(plan, 107, 8) == 1
    assert first_overlapping(plan, 108, 8) == 2


def test_each_chunk_has_its_own_stream_that_does_not_depend_on_the_others():
    first = torch.randn(4, generator=chunk_generator(7, 3))
    again = torch.randn(4, generator=chunk_generator(7, 3))
    assert torch.equal(first, again)
    assert not torch.equal(first, torch.randn(4, generator=chunk_generator(7, 4)))
    assert not torch.equal(first, torch.randn(4, generator=chunk_generator(8, 3)))


@pytest.mark.parametrize("enabled", [True, False])
def test_prefetch_gives_the_items_in_order_and_makes_at_most_one_ahead(enabled):
    made: list[int] = []
    alive = []
    lock = threading.Lock()

    def make(i):
        with lock:
            made.append(i)
        return i * 10

    got = []
    for value in Prefetch(make, range(6), enabled):
        time.sleep(0.02)  # the worker has time to run ahead if it were allowed to
        with lock:
            alive.append(len(made) - len(got))  # items made but not yet handed over, besides this one
        got.append(value)
    assert got == [0, 10, 20, 30, 40, 50]
    assert max(alive) <= (2 if enabled else 1)


def test_prefetch_stops_its_worker_when_the_caller_stops_and_passes_errors_on():
    made: list[int] = []
    it = iter(Prefetch(lambda i: made.append(i) or i, range(100)))
    assert next(it) == 0
    it.close()
    assert len(made) <= 2

    def fail(i):
        if i == 2:
            raise RuntimeError("chunk 2 broke")
        return i

    with pytest.raises(RuntimeError, match="chunk 2 broke"):
        list(Prefetch(fail, range(5)))


def test_latent_cache_keeps_the_most_recent_items():
    cache = LatentCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and len(cache) == 2
    none = LatentCache(0)
    none.put("a", 1)
    assert len(none) == 0


def test_dtype_names_and_placement():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda:0") == torch.float16
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="float16"):
        resolve_dtype("fp8", "cpu")
    layer = torch.nn.Linear(2, 2)
    weight = layer.weight
    place_modules([layer], "cpu", torch.float32)
    assert layer.weight is weight  # already there: not copied
    place_modules([layer], "cpu", torch.float64)
    assert layer.weight.dtype == torch.float64 and np.isfinite(layer.weight.detach().numpy()).all()


@pytest.mark.parametrize(
    ("n", "fps"), [(40, 25), (40, 50), (37, 30), (40, 24), (13, 12.5), (90, 29.97), (7, 60)]
)
def test_the_timeline_shows_every_output_frame_once_from_any_start(n, fps):
    from pipelines.engines.model.retime import Timeline

    t = Timeline(n, fps, 25)
    for start in (0, n // 3, n - 1):
        shown = [(i, j) for j in range(t.model_of(start), t.n_model) for i in t.copies(j, start)]
        assert [i for i, _ in shown] == list(range(start, n))
        # each output frame shows the model frame at the middle of its own interval
        assert all(j == int((i + 0.5) / fps * 25) for i, j in shown)
    assert len(t.output_rows()) == t.n_model and max(t.output_rows()) < n


@pytest.mark.parametrize("kind", ["group", "leaf"])
def test_diffusers_offloading_leaves_the_numbers_alone(kind):
    """enable_offload puts diffusers' group-offloading hooks on a real pipeline (the tiny LatentSync one); on this
    CPU-only machine the onload device is the CPU, so what is checked is that the hooks run through a whole
    sampling call (deep-feature cache included for leaf level) and change no number."""
    from latentsync_helpers import one_torch_thread, tiny_components

    from pipelines.engines.latentsync.pipeline import LatentSyncPipeline
    from pipelines.engines.model.offload import enable_offload, offloaded

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    audio = torch.from_numpy(rng.standard_normal((2, 50, 32)).astype(np.float32))
    mask = np.ones((64, 64), np.float32)
    mask[36:60, 12:52] = 0.0
    kw = {"num_inference_steps": 3, "deep_cache_interval": 2 if kind == "leaf" else None}

    def run(pipe):
        return pipe(faces, audio, mask, generator=torch.Generator().manual_seed(3), **kw)

    with one_torch_thread():
        pipe = LatentSyncPipeline(**tiny_components(0))
        reference = run(pipe)
        enable_offload(pipe, "cpu", kind)
        assert offloaded(pipe.unet) and offloaded(pipe.vae)
        np.testing.assert_array_equal(run(pipe), reference)


def test_unknown_offload_kinds_are_refused():
    from pipelines.engines.model.offload import enable_offload

    with pytest.raises(ValueError, match="group"):
        enable_offload(object(), "cpu", "sometimes")
