import numpy as np
import pytest
import torch
from latentsync_helpers import tiny_components

from pipelines.engines.latentsync.pipeline import LatentSyncPipeline, make_scheduler

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)


RES = 64


def _pipe(seed=0):
    return LatentSyncPipeline(**tiny_components(seed))


def _inputs(n=18, seed=0):
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, size=(n, RES, RES, 3), dtype=np.uint8)
    audio = torch.from_numpy(rng.standard_normal((n, 50, 32)).astype(np.float32))
    mask = np.ones((RES, RES), np.float32)
    mask[36:60, 12:52] = 0.0  # the lower-face region to regenerate
    return faces, audio, mask


def test_ddim_reference_timesteps():
    s = make_scheduler()
    s.set_timesteps(20)
    assert s.timesteps.tolist() == list(range(951, 0, -50))
    assert s.init_noise_sigma == 1.0


def test_call_keeps_pixels_outside_the_mask_and_is_seeded():
    pipe = _pipe()
    faces, audio, mask = _inputs()
    out = pipe(faces, audio, mask, num_inference_steps=2, generator=torch.Generator().manual_seed(7))
    assert out.shape == (18, RES, RES, 3) and out.dtype == np.uint8
    keep = mask.astype(bool)
    diff = np.abs(out.astype(int) - faces.astype(int))
    assert diff[:, keep].max() <= 1  # composite inside the crop: kept pixels come back (uint8 rounding only)
    assert diff[:, ~keep].mean() > 5  # the regenerated region is new
    again = pipe(faces, audio, mask, num_inference_steps=2, generator=torch.Generator().manual_seed(7))
    assert np.array_equal(out, again)
    other = pipe(faces, audio, mask, num_inference_steps=2, generator=torch.Generator().manual_seed(8))
    assert not np.array_equal(out, other)


def test_unet_input_order_cfg_batch_and_chunks():
    pipe = _pipe()
    faces, audio, mask = _inputs(n=18)
    seen = []

    def grab(_m, args, kwargs):
        seen.append((args[0].clone(), kwargs["encoder_hidden_states"].clone()))

    handle = pipe.unet.register_forward_pre_hook(grab, with_kwargs=True)
    noise = pipe.prepare_noise(RES, torch.Generator().manual_seed(3))
    assert noise.shape == (1, 4, 1, 8, 8)
    pipe(faces, audio, mask, num_inference_steps=2, guidance_scale=2.0, latents=noise,
         generator=torch.Generator().manual_seed(0))  # fmt: skip
    handle.remove()
    assert len(seen) == 2 * 2  # 2 chunks (16 + 2 frames) x 2 steps
    x, aud = seen[0]
    assert x.shape == (2, 13, 16, 8, 8)  # CFG as one batch
    assert torch.equal(aud[:16], torch.zeros_like(aud[:16])) and torch.equal(aud[16:], audio[:16])
    assert torch.equal(x[0, :4], x[1, :4])  # the same x_t in both halves
    # first step: every frame starts from the one shared noise draw
    assert torch.equal(x[0, :4], noise.expand(-1, -1, 16, -1, -1)[0])
    lowres = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None], size=(8, 8))[0, 0]
    assert torch.equal(x[0, 4], lowres.expand(16, -1, -1))  # channel 4: the mask
    # channels 5..8 the masked image, 9..12 the reference: different encodes of different pixels
    assert not torch.allclose(x[0, 5:9], x[0, 9:13])
    last_x, last_aud = seen[2]
    assert last_x.shape == (2, 13, 2, 8, 8) and torch.equal(last_aud[2:], audio[16:])
    assert torch.equal(last_x[0, :4], noise.expand(-1, -1, 2, -1, -1)[0])


def test_deep_cache_interval_one_equals_no_cache():
    pipe = _pipe(1)
    faces, audio, mask = _inputs(n=4)
    kw = dict(num_inference_steps=3, output_type="pt")
    a = pipe(faces, audio, mask, generator=torch.Generator().manual_seed(1), **kw)
    b = pipe(faces, audio, mask, generator=torch.Generator().manual_seed(1), deep_cache_interval=1, **kw)
    assert torch.equal(a, b)


def test_deep_cache_runs_the_shallow_path_on_cached_steps():
    pipe = _pipe(2)
    faces, audio, mask = _inputs(n=4)
    calls = {"down0": 0}
    h = pipe.unet.down_blocks[0].register_forward_hook(
        lambda *a: calls.__setitem__("down0", calls["down0"] + 1)
    )
    log = []
    out = pipe(faces, audio, mask, num_inference_steps=4, deep_cache_interval=3, output_type="pt",
               generator=torch.Generator().manual_seed(1), callback=lambda j, t, c: log.append((j, c.full_steps, c.shallow_steps)))  # fmt: skip
    h.remove()
    assert log[-1] == (3, 2, 2)  # steps 0 and 3 full, 1 and 2 from the cache
    assert calls["down0"] == 2  # the deep path ran on full steps only
    plain = pipe(
        faces,
        audio,
        mask,
        num_inference_steps=4,
        output_type="pt",
        generator=torch.Generator().manual_seed(1),
    )
    assert out.shape == plain.shape and not torch.equal(out, plain)


def test_shallow_path_reproduces_the_full_step_on_the_same_input():
    pipe = _pipe(3)
    from pipelines.engines.latentsync.pipeline import _DeepCache

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 13, 4, 8, 8, generator=g)
    audio = torch.randn(8, 50, 32, generator=g)
    t = torch.tensor(501)
    cache = _DeepCache(3)
    with torch.no_grad():
        full = pipe._unet_full(x, t, audio, cache)
        shallow = pipe._unet_shallow(x, t, audio, cache)
    assert torch.allclose(full, shallow, atol=1e-5)


def test_bad_inputs_are_refused():
    pipe = _pipe()
    faces, audio, mask = _inputs(n=3)
    with pytest.raises(ValueError, match="3 faces but 2 audio windows"):
        pipe(faces, audio[:2], mask, num_inference_steps=1)


def test_sequential_guidance_halves_equal_the_batched_call():
    pipe = _pipe(4)
    faces, audio, mask = _inputs(n=3)
    kw = dict(num_inference_steps=2, output_type="pt", guidance_scale=2.0)
    a = pipe(faces, audio, mask, generator=torch.Generator().manual_seed(2), **kw)
    b = pipe(faces, audio, mask, generator=torch.Generator().manual_seed(2), sequential_cfg=True, **kw)
    assert torch.allclose(a, b, atol=1e-5)
