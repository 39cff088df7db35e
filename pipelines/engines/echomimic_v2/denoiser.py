"""The EchoMimic V2 denoiser on diffusers' `UNetMotionModel`.

Upstream's EMOUNet3DConditionModel (src/models/unet_3d_emo.py) is the AnimateDiff layout with motion modules in
every down/up block and in the mid block (32 positions). Three things are its own, done here without copying its
blocks:

* reference self-attention: each spatial self-attention takes keys/values from [frame tokens || the ReferenceNet's
  features of the same block] (mutual_self_attention.py, read mode) — for the batch rows that see the reference;
  CFG's unconditional rows attend to themselves only;
* audio cross-attention: the 384-wide whisper windows are the cross-attention context, and its output is
  multiplied by 3.0 (hard-coded upstream);
* the pose encoder's output is added to the output of conv_in.

Where norms take statistics: upstream resnets use "inflated" (per-frame) GroupNorm, which is what diffusers does;
its motion modules normalise per frame too, where diffusers' AnimateDiff pools over frames, so their norm is
swapped for a per-frame GroupNorm over the same parameters (as for LatentSync).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNetMotionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

from pipelines.engines.echomimic_v2.configs import AUDIO_SCALE, DENOISER_CONFIG
from pipelines.engines.echomimic_v2.reference_net import ReferenceBank, transformer_blocks
from pipelines.engines.model.motion_norm import FrameGroupNorm


@dataclass
class _Conditions:
    """What one forward pass conditions on, shared by the processors and the conv_in hook of one model."""

    bank: ReferenceBank | None = None
    bank_rows: torch.Tensor | None = None  # (B*F,) bool: rows whose self-attention also sees the bank
    pose: torch.Tensor | None = None  # (B*F, C, h, w), added to conv_in's output


def _heads(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    b, n, _ = x.shape
    return x.view(b, n, attn.heads, -1).transpose(1, 2)


class ReferenceSelfAttention:
    """Self-attention whose keys/values also hold the reference bank's tokens for the rows that see it."""

    def __init__(self, name: str, conditions: _Conditions):
        self.name = name
        self.conditions = conditions

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **_: Any,
    ) -> torch.Tensor:
        c = self.conditions
        ref = None if c.bank is None else c.bank.get(self.name)
        q = _heads(attn, attn.to_q(hidden_states))
        k = _heads(attn, attn.to_k(hidden_states))
        v = _heads(attn, attn.to_v(hidden_states))
        if ref is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            rows = c.bank_rows
            # the bank's keys/values are projected once and shared by every frame (to_k/to_v act per token)
            ref = ref.to(hidden_states.dtype)
            k_ref = _heads(attn, attn.to_k(ref))
            v_ref = _heads(attn, attn.to_v(ref))
            if rows is None or bool(rows.all()):
                n = q.shape[0]
                k_all = torch.cat([k, k_ref.expand(n, -1, -1, -1)], dim=2)
                v_all = torch.cat([v, v_ref.expand(n, -1, -1, -1)], dim=2)
                out = F.scaled_dot_product_attention(q, k_all, v_all)
            else:
                out = torch.empty_like(q)
                seen = rows.nonzero().squeeze(1)
                alone = (~rows).nonzero().squeeze(1)
                n = seen.numel()
                if n:
                    k_all = torch.cat([k[seen], k_ref.expand(n, -1, -1, -1)], dim=2)
                    v_all = torch.cat([v[seen], v_ref.expand(n, -1, -1, -1)], dim=2)
                    out[seen] = F.scaled_dot_product_attention(q[seen], k_all, v_all)
                if alone.numel():
                    out[alone] = F.scaled_dot_product_attention(q[alone], k[alone], v[alone])
        b, h, n, d = out.shape
        out = out.transpose(1, 2).reshape(b, n, h * d).to(q.dtype)
        return attn.to_out[1](attn.to_out[0](out))


class ScaledCrossAttention:
    """diffusers' cross-attention with its output multiplied by a constant (upstream's audio weight)."""

    def __init__(self, scale: float):
        self.scale = scale
        self.inner = AttnProcessor2_0()

    def __call__(
        self, attn: Attention, hidden_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        return self.inner(attn, hidden_states, *args, **kwargs) * self.scale


def _frame_norm_motion_modules(model: UNetMotionModel) -> None:
    for module in list(model.modules()):
        if module.__class__.__name__ != "AnimateDiffTransformer3D":
            continue
        old = module.norm
        new = FrameGroupNorm(old.num_groups, old.num_channels, eps=old.eps, affine=old.affine)
        new.weight, new.bias = old.weight, old.bias
        module.norm = new


class EchoMimicV2UNet(UNetMotionModel):
    """Call: unet(sample (B, 4, F, h, w), t, audio (B, F, T, 384) or (B*F, T, 384), pose (B, 320, F, h, w),
    reference bank, reference_rows (B,) bool) -> v-prediction (B, 4, F, h, w)."""

    @functools.wraps(UNetMotionModel.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _frame_norm_motion_modules(self)
        conditions = _Conditions()
        object.__setattr__(self, "_conditions", conditions)  # forward-pass state, not a submodule
        spatial = {name for name, _ in transformer_blocks(self)}
        processors: dict[str, Any] = {}
        for key in self.attn_processors:
            block, _, attn = key.removesuffix(".processor").rpartition(".")
            if block in spatial and attn == "attn1":
                processors[key] = ReferenceSelfAttention(block, conditions)
            elif block in spatial and attn == "attn2":
                processors[key] = ScaledCrossAttention(AUDIO_SCALE)
            else:  # motion modules: plain attention
                processors[key] = AttnProcessor2_0()
        self.set_attn_processor(processors)
        self.conv_in.register_forward_hook(self._add_pose)

    def _add_pose(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        pose = self._conditions.pose
        return output if pose is None else output + pose.to(output.dtype)

    def forward(  # type: ignore[override]
        self,
        sample: torch.Tensor,
        timestep: Any,
        audio: torch.Tensor,
        pose: torch.Tensor | None = None,
        reference: ReferenceBank | None = None,
        reference_rows: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        b, _, f = sample.shape[:3]
        if f > self.config.motion_max_seq_length:
            raise ValueError(f"a window holds at most {self.config.motion_max_seq_length} frames, got {f}")
        if audio.ndim == 4:
            audio = audio.reshape(b * f, *audio.shape[2:])
        c = self._conditions
        if pose is not None:
            # (B, C, F, h, w) -> (B*F, C, h, w): diffusers runs its 2-D layers on frames stacked in the batch
            c.pose = pose.permute(0, 2, 1, 3, 4).reshape(b * f, *pose.shape[1:2], *pose.shape[3:])
        c.bank = reference
        if reference is not None and reference_rows is not None:
            c.bank_rows = reference_rows.to(sample.device).bool().repeat_interleave(f)
        try:
            return super().forward(sample, timestep, encoder_hidden_states=audio, return_dict=return_dict)
        finally:
            c.pose = c.bank = c.bank_rows = None


def build_denoiser(
    config: Mapping[str, Any] | None = None, device: str | torch.device = "cpu"
) -> EchoMimicV2UNet:
    """The denoiser with the reference config (or overrides, e.g. a tiny test size) on `device` ("meta": no memory)."""
    with torch.device(device):
        return EchoMimicV2UNet(**{**DENOISER_CONFIG, **(config or {})})
