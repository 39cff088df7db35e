import pytest
import torch
from echomimic_v2_helpers import TINY_AUDIO_WIDTH, tiny_pipeline

from pipelines.engines.echomimic_v2.sampling import context_windows, make_scheduler

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)


def test_scheduler_is_upstreams_v_prediction_zero_snr_trailing():
    s = make_scheduler()
    assert s.config.prediction_type == "v_prediction" and s.config.timestep_spacing == "trailing"
    assert float(s.alphas_cumprod[-1]) == pytest.approx(0.0, abs=1e-9)  # zero terminal SNR
    s.set_timesteps(6)
    assert int(s.timesteps[0]) == 999 and len(s.timesteps) == 6


def test_context_windows_overlap_wrap_and_shift_every_step():
    first = context_windows(20, 0)
    assert first == [list(range(12)), [*range(9, 20), 0], [18, 19, *range(10)]]
    assert context_windows(20, 1) == [[(i + 3) % 20 for i in w] for w in first]
    for step in range(5):  # every frame is covered at every step
        assert set().union(*context_windows(20, step)) == set(range(20))
    assert context_windows(8, 1) == [
        [3, 4, 5, 6, 7, 0, 1, 2]
    ]  # a short clip is one (rotated) window, as upstream
    with pytest.raises(ValueError):
        context_windows(20, 0, size=3, overlap=3)


def _inputs(n=14, size=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, size, size, generator=g) * 2 - 1
    audio = torch.randn(n, 10, TINY_AUDIO_WIDTH, generator=g)
    poses = torch.zeros(n, 3, size, size)
    poses[:, 0, 20:30, 10 + torch.arange(n) % 8] = 1.0  # a bright stroke that moves
    return image, audio, poses


@torch.no_grad()
def test_pipeline_renders_frames_deterministically_and_guidance_matters():
    pipe = tiny_pipeline()
    image, audio, poses = _inputs()
    a = pipe(
        image,
        audio,
        poses,
        num_inference_steps=2,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(7),
    )
    assert a.shape == (14, 3, 64, 64) and float(a.min()) >= 0 and float(a.max()) <= 1
    b = pipe(
        image,
        audio,
        poses,
        num_inference_steps=2,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(7),
    )
    assert torch.equal(a, b)
    c = pipe(
        image,
        audio,
        poses,
        num_inference_steps=2,
        guidance_scale=2.5,
        generator=torch.Generator().manual_seed(7),
    )
    assert (c - a).abs().max() > 1e-3
    with pytest.raises(ValueError, match="audio windows"):
        pipe(image, audio[:5], poses, num_inference_steps=1)


@torch.no_grad()
def test_noise_is_clamped_and_latents_can_be_returned():
    pipe = tiny_pipeline()
    noise = pipe.prepare_noise(40, 64, 64, torch.Generator().manual_seed(0))
    assert noise.shape == (1, 4, 40, 8, 8) and float(noise.abs().max()) == 1.5
    image, audio, poses = _inputs(n=4)
    lat = pipe(image, audio, poses, num_inference_steps=1, output_type="latent", latents=noise[:, :, :4])
    assert lat.shape == (1, 4, 4, 8, 8)
