"""MuseTalk's audio tokens: whisper-tiny through transformers' `WhisperEncoder`, in upstream's per-frame windows.

Upstream (musetalk/utils/audio_processor.py) cuts the 16 kHz speech into 30 s segments, turns each into a log-mel
with transformers' WhisperFeatureExtractor (the segment padded to 30 s), runs the encoder with all hidden states
(the stem output and each layer's output; the last one is after the encoder's final LayerNorm, unlike LatentSync's
features, so pipelines.audio_features is not reused), and stacks them: 50 steps a second, (layers + 1) states of
width 384. The segments' steps are concatenated and cut to floor(seconds * 50). Frame i at `fps` reads the
`WINDOW` steps from floor(i * 50 / fps) - LEFT * ceil(50 / fps) on, zeros outside the speech, flattened to
WINDOW * (layers + 1) tokens (time-major), plus the sinusoidal table of unet.audio_positions.

Here the segments are encoded when a chunk first needs them and only the last two are kept, so memory does not
grow with the clip; every frame's window equals upstream's whole-file computation.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

SAMPLE_RATE = 16000
STEPS_PER_SECOND = 50  # whisper encoder outputs: one per 20 ms
SEGMENT_SECONDS = 30
PAD_LEFT = 2  # upstream's audio_padding_length_left / _right (frames)
PAD_RIGHT = 2
WINDOW = 2 * (PAD_LEFT + PAD_RIGHT + 1)  # 10 encoder steps per frame


def load_encoder(folder: str | Path, weights: str | Path | None = None):
    """transformers' WhisperEncoder from a whisper-tiny folder (config.json) and its weights (the folder's
    model.safetensors / pytorch_model.bin, or `weights`), loaded strictly: the encoder's keys only."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    folder = Path(folder)
    config = WhisperConfig.from_pretrained(str(folder))
    # eager attention: the same arithmetic on every device (and upstream's numbers); the encoder is small
    config._attn_implementation = "eager"
    encoder = WhisperEncoder(config)
    if weights is None:
        weights = next(
            (
                folder / n
                for n in ("model.safetensors", "pytorch_model.safetensors", "pytorch_model.bin")
                if (folder / n).is_file()
            ),
            None,
        )
        if weights is None:
            raise FileNotFoundError(f"{folder}: no whisper weights (model.safetensors or pytorch_model.bin)")
    weights = Path(weights)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        from pipelines.weights.convert import load_pickle  # one InputError, never unsafe advice

        state = load_pickle(Path(weights))
    load_encoder_state(encoder, state, str(weights))
    return encoder.eval().requires_grad_(False)


def encoder_keys(state: dict[str, Any]) -> dict[str, Any]:
    """The encoder's part of a whisper checkpoint (WhisperForConditionalGeneration: `model.encoder.*`,
    WhisperModel: `encoder.*`), without the prefix."""
    for prefix in ("model.encoder.", "encoder."):
        part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if part:
            return part
    return dict(state)


def load_encoder_state(encoder, state: dict[str, Any], source: str = "whisper") -> None:
    from pipelines.weights.convert import key_mismatch

    state = encoder_keys(state)
    mismatch = key_mismatch(state, {k: tuple(v.shape) for k, v in encoder.state_dict().items()})
    if mismatch:
        raise ValueError(f"{source}: not a whisper encoder for this config: {mismatch}")
    encoder.load_state_dict(state, strict=True)


def feature_extractor(folder: str | Path | None = None):
    """The log-mel front end: the folder's preprocessor_config.json, else whisper's defaults (80 mels, 30 s)."""
    from transformers import WhisperFeatureExtractor

    if folder is not None and (Path(folder) / "preprocessor_config.json").is_file():
        return WhisperFeatureExtractor.from_pretrained(str(folder))
    return WhisperFeatureExtractor()


def n_frames(n_samples: int, fps: float) -> int:
    """Upstream's frame count for a speech of n_samples at 16 kHz."""
    return math.floor(n_samples / SAMPLE_RATE * fps)


class AudioWindows:
    """Per-frame audio tokens (F, WINDOW * (layers + 1), width) for one speech (16 kHz float samples)."""

    def __init__(self, encoder, extractor, samples: np.ndarray, fps: float, keep_segments: int = 2):
        self.encoder = encoder
        self.extractor = extractor
        self.samples = np.asarray(samples, np.float32)
        self.fps = float(fps)
        self.n_steps = math.floor(len(self.samples) / SAMPLE_RATE * STEPS_PER_SECOND)
        self.keep_segments = keep_segments
        self._segments: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.segments_encoded = 0

    @property
    def _param(self) -> torch.Tensor:
        return next(self.encoder.parameters())

    @property
    def steps_per_segment(self) -> int:
        return int(self.encoder.config.max_source_positions)

    def _segment(self, k: int) -> torch.Tensor:
        """(steps, layers + 1, width) hidden states of 30 s segment k."""
        cached = self._segments.get(k)
        if cached is not None:
            self._segments.move_to_end(k)
            return cached
        n = SEGMENT_SECONDS * SAMPLE_RATE
        piece = self.samples[k * n : (k + 1) * n]
        mel = self.extractor(piece, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        p = self._param
        with torch.no_grad():
            out = self.encoder(mel.to(device=p.device, dtype=p.dtype), output_hidden_states=True)
        states = torch.stack(out.hidden_states, dim=2)[0]
        self.segments_encoded += 1
        self._segments[k] = states
        while len(self._segments) > self.keep_segments:
            self._segments.popitem(last=False)
        return states

    def steps(self, lo: int, hi: int) -> torch.Tensor:
        """(hi - lo, layers + 1, width) encoder steps lo .. hi - 1 of the whole speech, zeros outside it."""
        cfg = self.encoder.config
        p = self._param
        out = torch.zeros((hi - lo, cfg.encoder_layers + 1, cfg.d_model), device=p.device, dtype=p.dtype)
        per = self.steps_per_segment
        j, end = max(lo, 0), min(hi, self.n_steps)
        while j < end:
            k, r = divmod(j, per)
            stop = min(end, (k + 1) * per)
            out[j - lo : stop - lo] = self._segment(k)[r : r + stop - j]
            j = stop
        return out

    def window_start(self, i: int) -> int:
        per_frame = STEPS_PER_SECOND / self.fps
        return math.floor(i * per_frame) - PAD_LEFT * math.ceil(per_frame)

    def __call__(self, frames: Sequence[int]) -> torch.Tensor:
        """(F, WINDOW * (layers + 1), width): the frames' tokens, time-major, before the positional table."""
        wins = [self.steps(s, s + WINDOW) for s in (self.window_start(i) for i in frames)]
        stacked = torch.stack(wins)  # (F, WINDOW, layers + 1, width)
        return stacked.flatten(1, 2)
