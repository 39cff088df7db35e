"""EchoMimic V3's samplers on diffusers' own schedulers, with upstream's exact sigma grids.

* preview: upstream itself uses diffusers' `FlowMatchEulerDiscreteScheduler` (shift 5, config/config.yaml),
  25 steps; the shift is applied at construction and again in `set_timesteps`, so the grid starts 1.0, 0.9914
  and ends 0.0244 (then 0).
* flash: upstream's own FlowUniPC (bh2, order 2, x0-prediction) is built with shift 1 and shifted by 5 in
  `set_timesteps`, from `linspace(0.999, 0, steps + 1)[:-1]`; its timesteps are those sigmas x 1000 truncated to
  integers. diffusers' `UniPCMultistepScheduler` with flow sigmas applies `flow_shift` to sigmas it is given
  and yields the same integer timesteps, so it is given that grid.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

SHIFT = 5.0
TRAIN_STEPS = 1000
PREVIEW_STEPS = 25
FLASH_STEPS = 8  # run_flash.sh
FLASH_SIGMA_MAX = (
    1.0 - 1.0 / TRAIN_STEPS
)  # upstream's FlowUniPC: sigmas of its 1000-step training grid, 0.999..0


def preview_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=TRAIN_STEPS,
        shift=SHIFT,
        use_dynamic_shifting=False,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def flash_scheduler() -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(
        num_train_timesteps=TRAIN_STEPS,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=SHIFT,
        solver_order=2,
        solver_type="bh2",
        predict_x0=True,
        lower_order_final=True,
        final_sigmas_type="zero",
    )


def flash_sigmas(steps: int = FLASH_STEPS) -> np.ndarray:
    """Upstream's unshifted flash grid (the scheduler shifts it)."""
    return np.linspace(FLASH_SIGMA_MAX, 0.0, steps + 1)[:-1].copy()


def set_timesteps(scheduler, steps: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Prepare `scheduler` for `steps` steps on upstream's grid of its variant; returns its timesteps."""
    if isinstance(scheduler, UniPCMultistepScheduler):
        scheduler.set_timesteps(sigmas=flash_sigmas(steps), device=device)
    else:
        scheduler.set_timesteps(steps, device=device)
    return scheduler.timesteps
