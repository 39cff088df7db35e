"""TeaCache for EchoMimic V3: skip the transformer's blocks on calls whose timestep embedding barely moved.

Upstream (src/cache_utils.py, the transformers' forward, infer_flash.py) enables it by default for flash; diffusers
has no TeaCache (its FirstBlockCache and MagCache measure other things, so they skip other calls). How upstream
decides, reproduced here:

* the measured input is the timestep projection `e0` (B, 6, dim) in the model's dtype; the distance between two
  calls is mean|e0 - e0_prev| / mean|e0_prev|, rescaled by a degree-4 polynomial fitted for Wan2.1 1.3B
  (`WAN_1_3B`) and summed over the calls since the last computed one. While the sum stays under `threshold`
  (0.1), the call adds the last computed residual (block output minus block input) instead of running the blocks;
  otherwise the blocks run and the sum restarts at 0.
* the counter counts transformer CALLS, not steps, and restarts every `period` calls (upstream passes the step
  count, 8). The first `warmup` (5) calls of each period always compute.
* upstream's flash pipeline calls the transformer twice per step (with audio, then with zero audio) and does not
  tell it which branch a call is, so both branches share one state: the second call of a step measures the same
  e0 as the first (distance 0, which the polynomial maps to -0.05: the sum falls), and a skipped call adds the
  residual of the last computed call, whichever branch that was. With upstream's 8 steps the calls of steps 0-2
  and 4-6 compute except the zero-audio calls of steps 2 and 6; the zero-audio calls of steps 3 and 7 are
  skipped, and their with-audio calls are skipped when the rescaled distance from the step before is < 0.15.

The state lives for one pipeline call (`EchoMimicV3Pipeline` makes a new one each time); upstream keeps it on the
model across calls, which is the same thing whenever the number of calls is a multiple of `period` (8 steps: yes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# cache_utils.get_teacache_coefficients for "Wan2.1-Fun-V1.1-1.3B" (highest power first)
WAN_1_3B = (-5.21862437e04, 9.23041404e03, -5.28275948e02, 1.36987616e01, -4.99875664e-02)
THRESHOLD = 0.1  # run_flash.sh --teacache_threshold
WARMUP_CALLS = 5  # run_flash.sh --num_skip_start_steps (calls, despite the name)


class TeaCache:
    """One sampling run's cache. `run(e0, hidden_states, blocks)` returns the blocks' output, computed or reused.

    `computed` lists, per call, whether the blocks ran (for tests, the bench and the render record)."""

    def __init__(
        self,
        period: int,
        threshold: float = THRESHOLD,
        warmup: int = WARMUP_CALLS,
        coefficients: tuple[float, ...] = WAN_1_3B,
    ):
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        self.period = period
        self.threshold = float(threshold)
        self.warmup = int(warmup)
        self.rescale = np.poly1d(coefficients)
        self.computed: list[bool] = []
        self._count = 0  # calls since the period began
        self._distance = 0.0
        self._previous: torch.Tensor | None = None
        self._residual: torch.Tensor | None = None

    def _should_compute(self, e0: torch.Tensor) -> bool:
        if self._count < self.warmup or self._previous is None or self._residual is None:
            self._distance = 0.0
            return True
        change = ((e0 - self._previous).abs().mean() / self._previous.abs().mean()).item()
        self._distance += float(self.rescale(change))
        if self._distance < self.threshold:
            return False
        self._distance = 0.0
        return True

    def run(
        self, e0: torch.Tensor, hidden_states: torch.Tensor, blocks: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        compute = self._should_compute(e0)
        self._previous = e0
        if compute:
            out = blocks(hidden_states)
            self._residual = out - hidden_states
        else:
            out = hidden_states + self._residual
        self.computed.append(compute)
        self._count += 1
        if self._count == self.period:  # upstream's reset: a new period starts from nothing
            self._count, self._distance, self._previous, self._residual = 0, 0.0, None, None
        return out

    @property
    def skipped(self) -> int:
        return self.computed.count(False)
