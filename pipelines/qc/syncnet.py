"""LatentSync's SyncNet ("StableSyncNet", `stable_syncnet.pt`): a visual and an audio encoder whose unit embeddings
are close when the lower face and the speech of the same 16 frames belong together.

The network (configs/syncnet/syncnet_16_pixel_attn.yaml upstream): the visual encoder takes 16 aligned faces
(LatentSync's 256-px alignment, the lower half: 16 x RGB = 48 channels of 128 x 256, scaled to -1..1); the audio
encoder one 80 x 52 mel window (Wav2Lip's mel: pre-emphasis 0.97, 800-point STFT every 200 samples at 16 kHz,
55-7600 Hz, -100..+20 dB scaled to -4..4) covering the same 0.64 s. Each is a stack of downsampling residual blocks
(some with self-attention) ending in a 1 x 1 map; both embeddings are L2-normalised.

Weights load strictly (every key and shape must match) from the converted safetensors of the `syncnet` entry of the
weights manifest. How talkreel turns the embeddings into a sync score: pipelines.qc.sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUM_FRAMES = 16
RESOLUTION = 256
MEL_WINDOW = 52  # ceil(16 / 5 * 16): mel columns of 16 video frames at 25 fps (80 columns a second)
MEL_PER_SECOND = 80.0
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class EncoderConfig:
    in_channels: int
    block_out_channels: tuple[int, ...]
    downsample_factors: tuple[int | tuple[int, int], ...]
    attn_blocks: tuple[int, ...]
    norm_num_groups: int = 32


@dataclass(frozen=True)
class SyncNetConfig:
    audio: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(
            1, (32, 64, 128, 256, 512, 1024, 2048), ((2, 1), 2, 2, 1, 2, 2, (2, 3)), (0, 0, 0, 1, 1, 0, 0)
        )
    )
    visual: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(
            48,
            (64, 128, 256, 256, 512, 1024, 2048, 2048),
            ((1, 2), 2, 2, 2, 2, 2, 2, 2),
            (0, 0, 0, 0, 1, 1, 0, 0),
        )
    )


def tiny_config() -> SyncNetConfig:
    """A small network of the same structure (tests): 8-channel groups, a few blocks, still 1 x 1 at the end."""
    return SyncNetConfig(
        audio=EncoderConfig(1, (8, 16, 16, 32), ((2, 1), 4, 4, (4, 8)), (0, 1, 0, 0), norm_num_groups=8),
        visual=EncoderConfig(48, (8, 16, 16, 32), ((2, 4), 8, 4, 4), (0, 1, 0, 0), norm_num_groups=8),
    )


class ResnetDown(nn.Module):
    """GroupNorm-SiLU-conv twice plus a shortcut, then a strided 3 x 3 conv (zero-padded on the far sides only)."""

    def __init__(self, in_ch: int, out_ch: int, factor: int | tuple[int, int], groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=1e-6)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_ch, eps=1e-6)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None
        factor = tuple(factor) if isinstance(factor, (tuple, list)) else factor
        self.downsample_conv = None if factor == 1 else nn.Conv2d(out_ch, out_ch, 3, stride=factor)
        # F.pad order (left, right, top, bottom): a stride of 1 along an axis pads it on both sides, so that
        # the 3 x 3 conv keeps its length; a stride of 2 or more pads only its far side.
        self.pad = (0, 1, 0, 1)
        if isinstance(factor, tuple) and factor[0] == 1:
            self.pad = (0, 1, 1, 1)
        elif isinstance(factor, tuple) and factor[1] == 1:
            self.pad = (1, 1, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        h = h + (x if self.conv_shortcut is None else self.conv_shortcut(x))
        if self.downsample_conv is not None:
            h = self.downsample_conv(F.pad(h, self.pad))
        return h


class AttentionBlock(nn.Module):
    """Self-attention over the map's positions (8 heads) and a GEGLU feed-forward, between 1 x 1 convs."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        from diffusers.models.attention import FeedForward
        from diffusers.models.attention_processor import Attention

        self.norm1 = nn.GroupNorm(groups, channels, eps=1e-6)
        self.norm2 = nn.LayerNorm(channels)
        self.norm3 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, activation_fn="geglu")
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.conv_out = nn.Conv2d(channels, channels, 1)
        self.attn = Attention(channels, heads=8, dim_head=channels // 8, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.conv_in(self.norm1(x)).flatten(2).transpose(1, 2)  # (b, h*w, c)
        t = self.attn(self.norm2(t)) + t
        t = self.ff(self.norm3(t)) + t
        return self.conv_out(t.transpose(1, 2).reshape(b, c, h, w)) + x


class DownEncoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        channels = config.block_out_channels
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        blocks: list[nn.Module] = []
        previous = channels[0]
        for out_ch, factor, attn in zip(channels, config.downsample_factors, config.attn_blocks, strict=True):
            blocks.append(ResnetDown(previous, out_ch, factor, config.norm_num_groups))
            if attn:
                blocks.append(AttentionBlock(out_ch, config.norm_num_groups))
            previous = out_ch
        self.down_blocks = nn.ModuleList(blocks)
        self.norm_out = nn.GroupNorm(config.norm_num_groups, channels[-1], eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return F.relu(self.norm_out(x))


class SyncNet(nn.Module):
    """forward(faces (b, 48, 128, 256), mel (b, 1, 80, 52)) -> unit (b, C) visual and audio embeddings."""

    def __init__(self, config: SyncNetConfig | None = None):
        super().__init__()
        config = config or SyncNetConfig()
        self.config = config
        self.audio_encoder = DownEncoder(config.audio)
        self.visual_encoder = DownEncoder(config.visual)
        self.eval()

    def embed_faces(self, faces: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual_encoder(faces).flatten(1), p=2, dim=1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_encoder(mel).flatten(1), p=2, dim=1)

    def forward(self, faces: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_faces(faces), self.embed_audio(mel)


def expected_keys(config: SyncNetConfig | None = None) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the checkpoint (what `talkreel weights` checks a download against)."""
    with torch.device("meta"):
        model = SyncNet(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_syncnet(path: Any, config: SyncNetConfig | None = None) -> SyncNet:
    """The network with the weights of a safetensors file, loaded strictly (a missing, unexpected or misshapen
    key is an error naming them)."""
    from safetensors.torch import load_file

    from pipelines.errors import InputError

    model = SyncNet(config)
    state = load_file(str(path))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or misshapen:
        parts = [
            f"{name} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen))
            if keys
        ]
        raise InputError(path, None, "not a SyncNet checkpoint: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.eval()


# --- inputs -------------------------------------------------------------------------------------------------


def mel_spectrogram(samples: np.ndarray) -> np.ndarray:
    """(80, n) float32 mel spectrogram of 16 kHz mono samples, as LatentSync's SyncNet was trained on (Wav2Lip's
    hparams: pre-emphasis 0.97; |STFT| of 800-sample Hann windows every 200 samples, centred with zero padding;
    Slaney mel filters 55-7600 Hz; 20 log10 clamped at -100 dB, minus 20 dB; scaled from -100..0 to -4..4, clipped)."""
    from scipy.signal import lfilter

    from pipelines.audio_features.mel import mel_filterbank

    x = lfilter([1.0, -0.97], [1.0], np.asarray(samples, np.float64))
    n_fft, hop = 800, 200
    padded = np.pad(x, n_fft // 2)  # librosa's centred frames, zero padding (its default since 0.10)
    n = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        padded, (n, n_fft), (padded.strides[0] * hop, padded.strides[0]), writeable=False
    )
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann, as librosa's
    spectrum = np.abs(np.fft.rfft(frames * window, axis=1)).T  # (401, n)
    mel = mel_filterbank(SAMPLE_RATE, n_fft, 80, 55.0, 7600.0).astype(np.float64) @ spectrum
    db = 20 * np.log10(np.maximum(mel, 1e-5)) - 20.0
    return np.clip(8.0 * (db + 100.0) / 100.0 - 4.0, -4.0, 4.0).astype(np.float32)


def mel_window(mel: np.ndarray, first_frame: int, fps: float) -> np.ndarray | None:
    """The (80, 52) mel window of video frames first_frame .. first_frame + 15 (None past either end)."""
    start = int(MEL_PER_SECOND * (first_frame / fps))
    if start < 0 or start + MEL_WINDOW > mel.shape[1]:
        return None
    return mel[:, start : start + MEL_WINDOW]


def faces_tensor(aligned: list[np.ndarray]) -> torch.Tensor:
    """(48, 128, 256) input from 16 aligned 256 x 256 RGB uint8 faces: their lower halves, frame-major channels,
    scaled to -1..1."""
    stack = np.stack(aligned)[:, RESOLUTION // 2 :, :, :]  # (16, 128, 256, 3)
    t = torch.from_numpy(stack).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return t.reshape(-1, RESOLUTION // 2, RESOLUTION)
