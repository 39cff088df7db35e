import numpy as np
import pytest
import torch
from echomimic_v3_helpers import TINY_TRANSFORMER, tiny_image_encoder, tiny_transformer, tiny_vae

from pipelines.engines.echomimic_v3.conditioning import pad_prompt_embeds
from pipelines.engines.echomimic_v3.pipeline import EchoMimicV3Pipeline
from pipelines.engines.echomimic_v3.schedulers import flash_scheduler
from pipelines.engines.echomimic_v3.teacache import WAN_1_3B, TeaCache
from pipelines.spec.engines import engine_settings

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)

H, W = 32, 48


def _flash_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(1, 5, 5, TINY_TRANSFORMER["audio_layers"], TINY_TRANSFORMER["audio_dim"], generator=g)
    return dict(
        image=torch.rand(1, 3, H, W, generator=g) * 2 - 1,
        audio_embeds=audio,
        prompt_embeds=pad_prompt_embeds([torch.randn(5, TINY_TRANSFORMER["text_dim"], generator=g)]),
        num_frames=5,
    )


class _BlockRuns:
    """Counts the runs of the transformer's first block (each transformer call that computes runs it once)."""

    def __init__(self, transformer):
        self.n = 0
        transformer.blocks[0].register_forward_hook(self._count)

    def _count(self, *_):
        self.n += 1


def _run(pipe, **kw):
    return pipe(**_flash_inputs(), generator=torch.Generator().manual_seed(3), **kw).frames


def test_flash_teacache_is_on_by_default_and_skips_upstreams_calls():
    """8 steps, 2 calls each: calls 0-4 and 8-12 always run (warm-up of each 8-call period); the zero-audio call
    of steps 2 and 6 measures the same timestep as the call before (distance 0 -> -0.05) and is skipped."""
    pipe = EchoMimicV3Pipeline(tiny_transformer("flash"), tiny_vae(), flash_scheduler(), tiny_image_encoder())
    runs = _BlockRuns(pipe.transformer)
    on = _run(pipe)
    calls = pipe.teacache_calls
    assert len(calls) == 16 and runs.n == calls.count(True)
    assert calls[:5] == [True] * 5 and calls[8:13] == [True] * 5
    assert calls[5] is False and calls[13] is False
    assert (
        calls[7] is False and calls[15] is False
    )  # steps 3 and 7: distance 0 again, the sum stays below 0.1

    runs.n = 0
    off = _run(pipe, teacache=False)
    assert pipe.teacache_calls is None and runs.n == 16
    assert not torch.allclose(on, off)
    assert torch.equal(_run(pipe), on)  # deterministic, a fresh cache per call


def test_a_skipped_call_reuses_the_last_residual_exactly():
    """Same input twice after the warm-up: the second call skips the blocks and gives the first one's output
    (input + (output - input): equal up to float rounding)."""
    model = tiny_transformer("flash")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, TINY_TRANSFORMER["in_channels"], 2, 4, 6, generator=g)
    text = torch.randn(1, 512, TINY_TRANSFORMER["text_dim"], generator=g)
    image = torch.randn(1, 257, TINY_TRANSFORMER["image_dim"], generator=g)
    audio = torch.randn(1, 5, 5, TINY_TRANSFORMER["audio_layers"], TINY_TRANSFORMER["audio_dim"], generator=g)
    cache = TeaCache(period=100, warmup=1)
    runs = _BlockRuns(model)
    with torch.no_grad():
        first = model(x, torch.tensor([900.0]), text, image, audio_embeds=audio, teacache=cache).sample
        again = model(x, torch.tensor([900.0]), text, image, audio_embeds=audio, teacache=cache).sample
        plain = model(x, torch.tensor([900.0]), text, image, audio_embeds=audio).sample
    assert cache.computed == [True, False] and runs.n == 2
    assert torch.equal(first, plain)
    torch.testing.assert_close(again, first, rtol=0, atol=1e-5)


def test_decisions_follow_the_rescaled_accumulated_distance():
    rescale = np.poly1d(WAN_1_3B)
    cache = TeaCache(period=6, threshold=0.1, warmup=2)
    hidden = torch.zeros(1, 3, 2)

    def blocks(h):
        return h + 1.0

    # relative changes 0, 0.01, 0.01, 0.05, 0.001 after two warm-up calls; then a new period
    levels = [1.0, 1.0, 1.01, 1.0201, 1.071105, 1.07217605, 5.0, 5.0]
    for v in levels:
        cache.run(torch.full((1, 6, 4), v), hidden, blocks)
    expected, total = [True, True], 0.0
    for prev, cur in zip(levels[1:5], levels[2:6], strict=True):
        total += rescale(abs(cur - prev) / prev)
        expected.append(total >= 0.1)
        total = 0.0 if total >= 0.1 else total
    assert cache.computed == [*expected, True, True]  # calls 6 and 7 start a new period (warm-up)
    assert rescale(0.01) < 0.1 < rescale(0.01) + rescale(0.01) + rescale(0.05)


def test_teacache_settings():
    flash = engine_settings({"name": "echomimic-v3-flash"})
    assert flash.teacache is None and flash.teacache_threshold == 0.1
    off = engine_settings({"name": "echomimic-v3-flash", "teacache": False, "teacache_threshold": 0.2})
    assert off.teacache is False and off.teacache_threshold == 0.2
    with pytest.raises(Exception, match="teacache_threshold"):
        engine_settings({"name": "echomimic-v3-flash", "teacache_threshold": -1})
