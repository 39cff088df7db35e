"""Where a model engine runs and in which precision.

device = default_device(option)                       # "cuda" when available, else "cpu"
dtype = resolve_dtype(settings.dtype, device)         # "auto" -> float16 on CUDA, float32 elsewhere
place_modules([pipe.unet, pipe.vae], device, dtype)   # moves/casts only what is not there yet
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DTYPE_NAMES = ("auto", "float16", "bfloat16", "float32")


def default_device(device: str | None = None) -> str:
    """`device` as given, or "cuda" when torch sees a GPU, else "cpu"."""
    if device:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name: str, device: Any):
    """The torch dtype a job's `dtype` setting names; "auto" = float16 on CUDA, float32 elsewhere."""
    import torch

    if name == "auto":
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    try:
        return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPE_NAMES)}") from None


def place_modules(modules: Iterable[Any], device: Any, dtype: Any) -> None:
    """Move and cast each module whose parameters are not yet on `device` in `dtype` (a no-op when they are, so
    a kept pipeline is not copied again for every job)."""
    import torch

    device = torch.device(device)
    for module in modules:
        p = next(module.parameters())
        if p.device != device or p.dtype != dtype:
            module.to(device=device, dtype=dtype)
