"""Speech -> whisper hidden states (~50 per second) -> one (50, width) window per video frame.

Parity mode (the default) reproduces LatentSync's feature path: the whole file's log-mel is cut into independent
3000-frame windows (the last zero-padded in the log-mel domain), each window keeps int(len / 2) encoder steps,
and the steps are concatenated. Independent windows make the features jump at every 30 s boundary, which users
see as a mouth glitch; `overlap_windows=True` encodes overlapping windows instead and cross-fades their steps
over the shared span, so each step comes from a window where it is far from the edge.
"""

from __future__ import annotations

import numpy as np
import torch

from pipelines.audio_features.encoder import WhisperAudioEncoder
from pipelines.audio_features.mel import log_mel

STEPS_PER_SECOND = 50  # encoder steps per second of audio (16 kHz / hop 160 / stride 2)
LEFT_STEPS = 4  # per video frame: steps centre-4 .. centre+5
RIGHT_STEPS = 6
OVERLAP_HOP = 2000  # mel frames between overlapping windows: 10 s shared by neighbours


def window_starts(n_mel: int, window: int, overlap: bool) -> list[int]:
    """Mel-frame start of each encoder window; the last one covers the end of the file."""
    if n_mel <= 0:
        return [0]
    if not overlap:
        return list(range(0, n_mel, window))
    hop = min(OVERLAP_HOP, window)
    starts = [0]
    while starts[-1] + window < n_mel:
        starts.append(starts[-1] + hop)
    return starts


def padded_window(mel: torch.Tensor, start: int, window: int) -> torch.Tensor:
    """mel[:, start:start+window], zero-padded on the right in the log-mel domain (as upstream, not in the waveform)."""
    part = mel[:, start : start + window]
    if part.shape[1] < window:
        part = torch.nn.functional.pad(part, (0, window - part.shape[1]))
    return part


def _crossfade_weights(n_steps: int, starts_steps: list[int], lens: list[int]) -> list[np.ndarray]:
    """Per window, the weight of each of its kept steps; weights of all windows sum to 1 at every global step."""
    raw = [np.ones(n, np.float64) for n in lens]
    for k in range(1, len(starts_steps)):
        prev_end = starts_steps[k - 1] + lens[k - 1]
        ov = min(prev_end - starts_steps[k], lens[k])
        if ov <= 0:
            continue
        # linear ramp over the shared span: the earlier window fades out as the later one fades in
        ramp = (np.arange(ov) + 0.5) / ov
        raw[k][:ov] *= ramp
        raw[k - 1][lens[k - 1] - ov :] *= 1.0 - ramp
    total = np.zeros(n_steps, np.float64)
    for s, w in zip(starts_steps, raw, strict=True):
        total[s : s + len(w)] += w
    return [w / total[s : s + len(w)] for s, w in zip(starts_steps, raw, strict=True)]


@torch.no_grad()
def encode_speech(
    encoder: WhisperAudioEncoder,
    samples: np.ndarray,
    overlap_windows: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """(T, n_layer + 1, width) float32 hidden states for 16 kHz mono samples, T = n_mel_frames // 2."""
    param = next(encoder.parameters())
    dtype = dtype or param.dtype
    mel = log_mel(samples)
    n_mel = mel.shape[1]
    window = encoder.window_frames
    starts = window_starts(n_mel, window, overlap_windows)
    lens = [int((min(s + window, n_mel) - s) / 2) for s in starts]
    n_steps = n_mel // 2
    if not overlap_windows:
        parts = []
        for s, n in zip(starts, lens, strict=True):
            h = encoder.hidden_states(padded_window(mel, s, window)[None].to(param.device, dtype))[0]
            parts.append(h[:n].float().cpu())
        out = torch.cat(parts) if parts else torch.zeros(0)
        return out[:n_steps]
    starts_steps = [s // 2 for s in starts]
    weights = _crossfade_weights(n_steps, starts_steps, lens)
    width = encoder.dims.n_state
    out = torch.zeros(n_steps, encoder.dims.n_layer + 1, width)
    for s, ss, n, w in zip(starts, starts_steps, lens, weights, strict=True):
        if n == 0:
            continue
        h = (
            encoder.hidden_states(padded_window(mel, s, window)[None].to(param.device, dtype))[0][:n]
            .float()
            .cpu()
        )
        out[ss : ss + n] += h * torch.from_numpy(w).float()[:, None, None]
    return out


def frame_step_indices(frame: int, n_steps: int, fps: float = 25.0) -> np.ndarray:
    """The 10 encoder steps feeding video frame `frame`: centre-4 .. centre+5, clamped into [0, n_steps - 1]."""
    centre = int(frame * STEPS_PER_SECOND / fps)
    return np.clip(np.arange(centre - LEFT_STEPS, centre + RIGHT_STEPS), 0, max(n_steps - 1, 0))


def frame_windows(features: torch.Tensor, frames: range | list[int], fps: float = 25.0) -> torch.Tensor:
    """(len(frames), 10 * (n_layer + 1), width): per frame, step-major and layer-minor (step0 layers, step1 layers, ...)."""
    n_steps = features.shape[0]
    if n_steps == 0:
        raise ValueError("no audio features: the speech is shorter than one encoder step (20 ms)")
    idx = np.stack([frame_step_indices(i, n_steps, fps) for i in frames])
    picked = features[torch.from_numpy(idx)]  # (F, 10, L, C)
    return picked.reshape(picked.shape[0], -1, features.shape[-1])
