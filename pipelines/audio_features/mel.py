"""Whisper's log-mel spectrogram, computed the way LatentSync feeds its audio encoder.

The whole file is transformed at once (so the clamp to `max - 8` is global over the file, not per 30 s window),
then cut into windows by the caller; padding happens in the log-mel domain with zeros, which is what the
checkpoints were trained with (not the waveform padding of transformers' feature extractor).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
WINDOW_FRAMES = 3000  # 30 s of mel frames: the encoder's fixed input length


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's auditory scale: linear below 1 kHz, logarithmic above (librosa's default, htk=False)."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = freq / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    above = freq >= min_log_hz
    mels = np.where(above, min_log_mel + np.log(np.maximum(freq, 1e-12) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    above = mels >= min_log_mel
    return np.where(above, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


@functools.lru_cache(maxsize=4)
def mel_filterbank(
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) float32 triangular filters, Slaney-normalised (each filter has unit area in Hz).

    With the defaults this is the matrix openai-whisper ships as `mel_filters.npz` (librosa.filters.mel(sr=16000,
    n_fft=400, n_mels=80)); computed here so no asset or librosa is needed.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(80, n_frames) float32 log-mel of 16 kHz mono samples, n_frames = len(samples) // 160.

    Hann window (periodic), centred frames with reflect padding, the last frame dropped, power spectrum,
    log10 floored at 1e-10, clamped to (global max - 8), then scaled as (x + 4) / 4.
    """
    audio = torch.as_tensor(
        np.asarray(samples, dtype=np.float32) if not torch.is_tensor(samples) else samples
    )
    audio = audio.to(torch.float32).flatten()
    if audio.numel() < N_FFT // 2 + 1:
        # reflect padding needs more samples than half a window; shorter input is padded with silence first
        audio = torch.nn.functional.pad(audio, (0, N_FFT // 2 + 1 - audio.numel()))
    window = torch.hann_window(N_FFT)
    spec = torch.stft(
        audio, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    power = spec[:, :-1].abs() ** 2
    filters = torch.from_numpy(mel_filterbank())
    mel = filters @ power
    logs = torch.clamp(mel, min=1e-10).log10()
    logs = torch.maximum(logs, logs.max() - 8.0)
    return (logs + 4.0) / 4.0
