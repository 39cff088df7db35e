"""The whisper audio encoder (tiny: 4 blocks, width 384, 6 heads) as LatentSync and EchoMimic V2 use it.

Parameter names follow openai-whisper's `AudioEncoder` so the `encoder.*` part of `tiny.pt`'s `model_state_dict`
loads strictly. `hidden_states` returns what the lip-sync models were trained on: the stem output (after the
positional embedding) and each block's output, all before `ln_post` (transformers' last hidden state is after
the final LayerNorm, which is why that class is not used here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EncoderDims:
    n_mels: int = 80
    n_ctx: int = 1500
    n_state: int = 384
    n_head: int = 6
    n_layer: int = 4


TINY = EncoderDims()


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's fixed positional embedding: sin on the first half of the channels, cos on the second."""
    if channels % 2:
        raise ValueError(f"channels must be even, got {channels}")
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class _LayerNorm(nn.LayerNorm):
    # statistics in fp32 even when the encoder runs in half precision, as the checkpoint was trained
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class _Attention(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        heads = [
            p(x).view(b, n, self.n_head, c // self.n_head).transpose(1, 2)
            for p in (self.query, self.key, self.value)
        ]
        # whisper scales q and k by d^-1/4 each: the same as SDPA's default 1/sqrt(d)
        y = F.scaled_dot_product_attention(*heads)
        return self.out(y.transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.attn = _Attention(n_state, n_head)
        self.attn_ln = _LayerNorm(n_state)
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))
        self.mlp_ln = _LayerNorm(n_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class WhisperAudioEncoder(nn.Module):
    """mel (B, n_mels, 2 * n_ctx) -> hidden states (B, n_ctx, n_layer + 1, n_state)."""

    def __init__(self, dims: EncoderDims = TINY):
        super().__init__()
        self.dims = dims
        self.conv1 = nn.Conv1d(dims.n_mels, dims.n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.n_state, dims.n_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(dims.n_ctx, dims.n_state))
        self.blocks = nn.ModuleList([_Block(dims.n_state, dims.n_head) for _ in range(dims.n_layer)])
        # unused by the lip-sync models but part of the checkpoint, so strict loading keeps it
        self.ln_post = _LayerNorm(dims.n_state)

    @property
    def window_frames(self) -> int:
        return 2 * self.dims.n_ctx

    def hidden_states(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.shape[1:] != (self.dims.n_mels, self.window_frames):
            raise ValueError(
                f"mel must be (B, {self.dims.n_mels}, {self.window_frames}), got {tuple(mel.shape)}"
            )
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        x = x + self.positional_embedding.to(x.dtype)
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        return torch.stack(states, dim=2)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(mel)

    def load_openai_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Strictly load openai-whisper weights: a full `model_state_dict` (its `encoder.*` part) or encoder keys alone."""
        if any(k.startswith("encoder.") for k in state_dict):
            state_dict = {k[len("encoder.") :]: v for k, v in state_dict.items() if k.startswith("encoder.")}
        from pipelines.weights.convert import key_mismatch

        mismatch = key_mismatch(state_dict, {k: tuple(v.shape) for k, v in self.state_dict().items()})
        if mismatch:
            raise ValueError(
                f"not a whisper encoder checkpoint for these dimensions ({self.dims}): {mismatch}"
            )
        self.load_state_dict(dict(state_dict), strict=True)


def dims_from_state_dict(state_dict: Mapping[str, torch.Tensor], n_head: int | None = None) -> EncoderDims:
    """Encoder dimensions read off a checkpoint's shapes (heads cannot be read: whisper uses width / 64)."""
    prefix = "encoder." if any(k.startswith("encoder.") for k in state_dict) else ""
    conv1 = state_dict[f"{prefix}conv1.weight"]
    pos = state_dict[f"{prefix}positional_embedding"]
    n_layer = len({k.split(".")[1 + bool(prefix)] for k in state_dict if k.startswith(f"{prefix}blocks.")})
    n_state = int(conv1.shape[0])
    return EncoderDims(
        n_mels=int(conv1.shape[1]),
        n_ctx=int(pos.shape[0]),
        n_state=n_state,
        n_head=n_head or max(1, n_state // 64),
        n_layer=n_layer,
    )


def load_encoder(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    dims_path: str | Path | None = None,
):
    """A WhisperAudioEncoder from a safetensors file (converted weights, with the checkpoint's `dims` in a JSON file
    beside it) or an openai-whisper `.pt` checkpoint."""
    path = Path(path)
    n_head = None
    if dims_path is not None and Path(dims_path).is_file():
        import json

        n_head = int(json.loads(Path(dims_path).read_text(encoding="utf-8"))["n_audio_head"])
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if n_head is None and "n_audio_head" in meta:
            n_head = int(meta["n_audio_head"])
    else:
        from pipelines.weights.convert import load_pickle  # one InputError, never unsafe advice

        ckpt = load_pickle(Path(path))
        state = ckpt.get("model_state_dict", ckpt)
        if isinstance(ckpt.get("dims"), Mapping):
            n_head = int(ckpt["dims"]["n_audio_head"])
    enc = WhisperAudioEncoder(dims_from_state_dict(state, n_head))
    enc.load_openai_state_dict(state)
    return enc.to(device=device, dtype=dtype).eval()
