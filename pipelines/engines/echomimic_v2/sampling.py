"""Upstream's sampling schedule: the DDIM scheduler it configures and its context windows.

Facts from antgroup/echomimic_v2 (configs/inference/inference_v2.yaml, src/pipelines/context.py,
src/pipelines/pipeline_echomimicv2*.py): DDIM with linear betas 0.00085..0.012, v-prediction, zero-SNR rescaled
betas and "trailing" timesteps. Frames are denoised in windows of 12 with 3 frames of overlap (stride 9) laid
round the clip as a closed loop; at step i every window is moved 3*i frames further (mod the clip length), so
window borders fall on different frames at every step. Predictions of frames covered twice are averaged.
"""

from __future__ import annotations

from diffusers import DDIMScheduler

SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}

CONTEXT_FRAMES = 12
CONTEXT_OVERLAP = 3
SHIFT_PER_STEP = 3


def make_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**SCHEDULER_CONFIG)


def context_windows(
    n_frames: int,
    step: int,
    size: int = CONTEXT_FRAMES,
    overlap: int = CONTEXT_OVERLAP,
    shift: int = SHIFT_PER_STEP,
) -> list[list[int]]:
    """The frame indices of each window at denoising step `step` (upstream's "uniform" schedule at stride 1)."""
    if n_frames <= 0:
        return []
    if size <= overlap:
        raise ValueError(f"context windows of {size} frames cannot overlap by {overlap}")
    if n_frames <= size:
        base = [list(range(n_frames))]
    else:
        base = [[e % n_frames for e in range(j, j + size)] for j in range(0, n_frames, size - overlap)]
    return [[(i + shift * step) % n_frames for i in w] for w in base]
