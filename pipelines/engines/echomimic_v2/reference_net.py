"""The ReferenceNet: the persona image's self-attention inputs, which the denoiser attends to on every frame.

Upstream's ReferenceNet is its own copy of the SD-1.x UNet whose transformer blocks have no cross-attention
(no attn2/norm2) and whose output convolutions are removed; it runs once per persona image at t=0 with no
conditioning, and only the inputs of its 16 self-attentions (the norm1 outputs) are kept: the "bank"
(src/models/mutual_self_attention.py, write mode). Here it is diffusers' `UNet2DConditionModel` built from the
same config with those modules set to None, so its state dict has exactly the official checkpoint's 570 keys.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from pipelines.engines.echomimic_v2.configs import REFERENCE_CONFIG

ReferenceBank = dict[str, torch.Tensor]
"""Transformer-block path (the same in both UNets) -> that block's norm1 output, (1, tokens, channels)."""


def transformer_blocks(model: nn.Module) -> list[tuple[str, BasicTransformerBlock]]:
    """The spatial transformer blocks of a UNet, in module order (the bank's order); motion modules excluded."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, BasicTransformerBlock) and ".attentions." in f".{name}"
    ]


class ReferenceNet(UNet2DConditionModel):
    """`UNet2DConditionModel` without cross-attention or output head; `bank(latents)` gives its features."""

    @functools.wraps(UNet2DConditionModel.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for _, block in transformer_blocks(self):
            # diffusers skips the cross-attention step when attn2 is None: the residual passes unchanged
            block.attn2 = None
            block.norm2 = None
        self.conv_norm_out = None
        self.conv_out = nn.Identity()  # nothing after the last transformer block is used

    @torch.no_grad()
    def bank(self, latents: torch.Tensor) -> ReferenceBank:
        """The norm1 outputs of every transformer block for reference latents (B, 4, h, w), at timestep 0."""
        captured: ReferenceBank = {}
        handles = []
        for name, block in transformer_blocks(self):

            def keep(_module, _inputs, output, name=name):
                captured[name] = output

            handles.append(block.norm1.register_forward_hook(keep))
        try:
            t = torch.zeros((), dtype=torch.long, device=latents.device)
            super().forward(latents, t, encoder_hidden_states=None, return_dict=False)
        finally:
            for h in handles:
                h.remove()
        return captured


def build_reference_net(
    config: Mapping[str, Any] | None = None, device: str | torch.device = "cpu"
) -> ReferenceNet:
    """The ReferenceNet with the reference config (or overrides, e.g. a tiny test size) on `device`."""
    with torch.device(device):
        return ReferenceNet(**{**REFERENCE_CONFIG, **(config or {})})
