"""Keeping a pipeline's models off the GPU while they wait: diffusers' own offloading, chosen by name.

    enable_offload(pipe, "cuda", "group")      # a DiffusionPipeline; or "model" / "leaf" / "none"
    disable_offload(pipe)                      # back to plain modules (then place them yourself)

- "model": whole models visit the device while used (diffusers `enable_model_cpu_offload`, ordered by the
  pipeline's `model_cpu_offload_seq`). Its hooks offload the previous model of the sequence when the next one
  runs, from whichever thread calls it: a model used on the prefetch thread must not be in that chain.
- "group": diffusers group offloading at block level (`enable_group_offload(offload_type="block_level")`): each
  run of `num_blocks_per_group` blocks of a ModuleList is on the device only during its forward; on CUDA its
  transfers overlap compute on a side stream (`use_stream`).
- "leaf": group offloading at leaf level: every layer onloads itself (the least memory; every weight crosses the
  bus at every forward).

All kinds use diffusers' hooks, which need the `accelerate` package (a talkreel dependency). Weights move unchanged, so the numbers are those of the un-offloaded pipeline (tested on the CPU). Two conditions
come with group offloading: with `use_stream` (CUDA), a model's blocks must run in the order of its first forward
(the next group is prefetched in that order), and block level hooks fire on a block's own forward: a pipeline that
calls submodules directly (LatentSync's deep-feature cache) must use "leaf" without streams, or its own placement.
Layerwise casting (fp8 storage, `ModelMixin.enable_layerwise_casting`) and diffusers' step caches are diffusers
methods on the models themselves and are used directly.
"""

from __future__ import annotations

from typing import Any

OFFLOAD_KINDS = ("none", "model", "group", "leaf")


def enable_offload(
    pipe: Any,
    device: Any,
    kind: str = "group",
    num_blocks_per_group: int = 1,
    exclude: list[str] | None = None,
    use_stream: bool | None = None,
) -> None:
    """Offload `pipe`'s models to the CPU with diffusers' hooks (see the module doc). `exclude`: component names
    that stay where they are; `use_stream` defaults to True on CUDA for "group" and False otherwise."""
    import torch

    device = torch.device(device)
    if kind not in OFFLOAD_KINDS:
        raise ValueError(f"unknown offload kind {kind!r}; expected one of {', '.join(OFFLOAD_KINDS)}")
    if kind == "none":
        return
    if kind == "model":
        pipe.enable_model_cpu_offload(device=device)
        return
    if use_stream is None:
        use_stream = kind == "group" and device.type == "cuda"
    pipe.enable_group_offload(
        onload_device=device,
        offload_device=torch.device("cpu"),
        offload_type="block_level" if kind == "group" else "leaf_level",
        num_blocks_per_group=num_blocks_per_group if kind == "group" else None,
        use_stream=use_stream,
        exclude_modules=list(exclude or []),
    )


def disable_offload(pipe: Any) -> None:
    """Remove every offloading hook `enable_offload` put on `pipe`'s models (they stay where the hooks left them,
    usually the CPU): for an engine that keeps its models across jobs whose settings differ."""
    import torch
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.group_offloading import (
        _GROUP_OFFLOADING,
        _LAYER_EXECUTION_TRACKER,
        _LAZY_PREFETCH_GROUP_OFFLOADING,
    )

    pipe.remove_all_hooks()  # enable_model_cpu_offload's (accelerate) hooks
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module) and offloaded(module):
            registry = HookRegistry.check_if_exists_or_initialize(module)
            for name in (_GROUP_OFFLOADING, _LAYER_EXECUTION_TRACKER, _LAZY_PREFETCH_GROUP_OFFLOADING):
                registry.remove_hook(name, recurse=True)


def offloaded(module: Any) -> bool:
    """Whether diffusers' group offloading hooks are on `module`."""
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    return bool(_is_group_offload_enabled(module))
