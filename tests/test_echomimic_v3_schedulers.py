import numpy as np
import torch
from diffusers import UniPCMultistepScheduler

from pipelines.engines.echomimic_v3.schedulers import (
    FLASH_STEPS,
    PREVIEW_STEPS,
    SHIFT,
    flash_scheduler,
    flash_sigmas,
    preview_scheduler,
    set_timesteps,
)


def _shift(s):
    return SHIFT * s / (1 + (SHIFT - 1) * s)


def test_preview_grid_is_shifted_twice_as_upstreams_flow_match_euler():
    scheduler = preview_scheduler()
    timesteps = set_timesteps(scheduler, PREVIEW_STEPS)
    # the constructor shifts the 1000-step training grid, set_timesteps shifts the spaced grid again
    lowest = _shift(1 / 1000)
    expected = _shift(np.linspace(1.0, lowest, PREVIEW_STEPS))
    assert np.allclose(scheduler.sigmas[:-1].numpy(), expected, atol=1e-6)
    assert scheduler.sigmas[-1] == 0
    assert np.allclose(scheduler.sigmas[[1, -2]].numpy(), [0.99142, 0.02441], atol=1e-5)
    assert np.allclose(timesteps.numpy(), 1000 * expected, atol=1e-3)


def test_flash_grid_and_integer_timesteps_are_upstreams_flow_unipc():
    scheduler = flash_scheduler()
    timesteps = set_timesteps(scheduler, FLASH_STEPS)
    expected = _shift(np.linspace(0.999, 0.0, FLASH_STEPS + 1)[:-1])
    assert np.allclose(scheduler.sigmas.numpy(), np.append(expected, 0.0), atol=1e-7)
    # upstream truncates sigma x 1000 to integers (the values its 8-step run passes to the transformer)
    assert timesteps.dtype == torch.int64
    assert timesteps.tolist() == [999, 972, 937, 892, 833, 749, 624, 416]
    # diffusers' default flow grid (1 .. 0.001) is NOT upstream's: the explicit sigmas are what makes it equal
    default = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=SHIFT
    )
    default.set_timesteps(FLASH_STEPS)
    assert not np.allclose(default.sigmas.numpy(), scheduler.sigmas.numpy(), atol=1e-4)


def test_flash_sigmas_are_unshifted_and_start_below_one():
    sigmas = flash_sigmas(4)
    assert np.allclose(sigmas, [0.999, 0.74925, 0.4995, 0.24975])


def test_a_flash_run_reaches_the_data_end_of_the_path():
    # flow matching: x_t = (1 - s) x0 + s noise, velocity noise - x0; an exact velocity must land on x0
    scheduler = flash_scheduler()
    set_timesteps(scheduler, FLASH_STEPS)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    x = (1 - scheduler.sigmas[0]) * x0 + scheduler.sigmas[0] * noise
    for t in scheduler.timesteps:
        x = scheduler.step(noise - x0, t, x, return_dict=False)[0]
    assert torch.allclose(x, x0, atol=1e-5)
