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


def window_starts(n_mel: int, window: int, overlap: bool) -> list[int]:
    """Mel-frame start of each encoder window; the last one covers the end of the file."""
    if n_mel <= 0:
        return [0]
    if not overlap:
        return list(range(0, n_mel, window))
    # neighbours share a third of a window (10 s of whisper's 30 s); even, so window starts fall on encoder steps
    hop = max(2, (2 * window // 3) & ~1)
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


class SpeechFeatures:
    """Encoder steps of one speech track, computed window by window on demand (memory independent of length).

    The log-mel of the whole file is kept (80 floats per 10 ms; the clamp is global); encoder windows are run when a
    step inside them is first asked for, and only the last `keep` windows are held.
    """

    def __init__(
        self,
        encoder: WhisperAudioEncoder,
        samples: np.ndarray,
        overlap_windows: bool = False,
        dtype: torch.dtype | None = None,
        keep: int = 3,
    ):
        param = next(encoder.parameters())
        self.encoder = encoder
        self.device = param.device
        self.dtype = dtype or param.dtype
        self.overlap = overlap_windows
        self.mel = log_mel(samples)
        n_mel = self.mel.shape[1]
        self.window = encoder.window_frames
        self.starts = window_starts(n_mel, self.window, overlap_windows)
        self.lens = [int((min(s + self.window, n_mel) - s) / 2) for s in self.starts]
        self.n_steps = n_mel // 2
        self.start_steps = [s // 2 for s in self.starts]
        self.weights = (
            _crossfade_weights(self.n_steps, self.start_steps, self.lens) if overlap_windows else None
        )
        self.shape = (self.n_steps, encoder.dims.n_layer + 1, encoder.dims.n_state)
        self._held: dict[int, torch.Tensor] = {}
        self._keep = keep

    def __len__(self) -> int:
        return self.n_steps

    @torch.no_grad()
    def _window(self, k: int) -> torch.Tensor:
        if k not in self._held:
            mel = padded_window(self.mel, self.starts[k], self.window)[None].to(self.device, self.dtype)
            self._held[k] = self.encoder.hidden_states(mel)[0][: self.lens[k]].float().cpu()
            while len(self._held) > self._keep:
                self._held.pop(next(iter(self._held)))
        return self._held[k]

    def steps(self, idx: np.ndarray) -> torch.Tensor:
        """(len(idx), n_layer + 1, width) for step indices in [0, n_steps)."""
        idx = np.asarray(idx, np.int64)
        out = torch.zeros(len(idx), *self.shape[1:])
        for k, (s, n) in enumerate(zip(self.start_steps, self.lens, strict=True)):
            inside = (idx >= s) & (idx < s + n)
            if self.overlap:
                w = self.weights[k][np.clip(idx - s, 0, max(n - 1, 0))] * inside if n else inside * 0.0
                inside = inside & (w > 0)
            if not inside.any():
                continue
            rows = torch.from_numpy(idx[inside] - s)
            part = self._window(k)[rows]
            if self.overlap:
                part = part * torch.from_numpy(w[inside]).float()[:, None, None]
                out[torch.from_numpy(np.flatnonzero(inside))] += part
            else:
                out[torch.from_numpy(np.flatnonzero(inside))] = part
        return out

    def frame_windows(self, frames: range | list[int], fps: float = 25.0) -> torch.Tensor:
        """(len(frames), 10 * (n_layer + 1), width) per-frame windows (see `frame_windows`)."""
        if self.n_steps == 0:
            raise ValueError("no audio features: the speech is shorter than one encoder step (20 ms)")
        idx = np.stack([frame_step_indices(i, self.n_steps, fps) for i in frames])
        picked = self.steps(idx.ravel()).reshape(len(idx), idx.shape[1], *self.shape[1:])
        return picked.reshape(len(idx), -1, self.shape[-1])


def encode_speech(
    encoder: WhisperAudioEncoder,
    samples: np.ndarray,
    overlap_windows: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """(T, n_layer + 1, width) float32 hidden states for 16 kHz mono samples, T = n_mel_frames // 2."""
    feats = SpeechFeatures(encoder, samples, overlap_windows, dtype)
    return feats.steps(np.arange(len(feats)))


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
