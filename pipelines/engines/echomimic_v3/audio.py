"""Speech features for EchoMimic V3: wav2vec2 through transformers' `Wav2Vec2Model`, as each variant reads them.

* preview (facebook/wav2vec2-base-960h): the last hidden state of the whole clip, ~50 vectors per second
  (2 per video frame at 25 fps); the transformer cuts its per-latent-frame windows from them.
* flash (TencentGameMate/chinese-wav2vec2-base): the audio is first brought to -23 LUFS; the CNN features are
  linearly resampled to exactly one vector per video frame BEFORE the transformer encoder (upstream's own
  Wav2Vec2Model subclass does that), the outputs of all 12 encoder layers are kept, and every video frame gets a
  5-frame window of them centred on itself (indices clamped at the clip's ends).

Upstream's subclass reads the layers from `encoder(..., output_hidden_states=True)`, which transformers 5 no
longer fills; here the stock model runs unchanged with two forward hooks: one on the CNN that resamples its
output, and one per encoder layer that keeps the layer's output.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

SAMPLE_RATE = 16_000
FLASH_LUFS = -23.0
FLASH_WINDOW = 5  # video frames per audio window (2 either side)


def loudness_normalised(
    samples: np.ndarray, rate: int = SAMPLE_RATE, target: float = FLASH_LUFS
) -> np.ndarray:
    """`samples` scaled to `target` integrated loudness (BS.1770); silent or too short audio is left as it is.

    Measured with talkreel's own meter (48 kHz), on a 3x polyphase upsampling of the 16 kHz speech.
    """
    from scipy.signal import resample_poly

    from pipelines.media.loudness import RATE, measure

    samples = np.asarray(samples, dtype=np.float32)
    at_48k = (
        samples
        if rate == RATE
        else resample_poly(samples, RATE // math.gcd(RATE, rate), rate // math.gcd(RATE, rate))
    )
    loudness = measure(np.asarray(at_48k, dtype=np.float32)).integrated
    if not math.isfinite(loudness) or loudness <= -70.0:
        return samples  # nothing above the absolute gate: upstream leaves such audio alone too
    return (samples * 10.0 ** ((target - loudness) / 20.0)).astype(np.float32)


class Wav2Vec2Features:
    """A wav2vec2 model and its input normaliser, giving each variant's per-clip audio features."""

    def __init__(self, model: Wav2Vec2Model, feature_extractor: Wav2Vec2FeatureExtractor):
        self.model = model.eval()
        self.feature_extractor = feature_extractor

    @classmethod
    def from_folder(cls, folder, dtype: torch.dtype = torch.float32) -> Wav2Vec2Features:
        from transformers.utils import logging as hf_logging

        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # an engine never prints (transformers 5 draws a loading bar)
        try:
            model = Wav2Vec2Model.from_pretrained(str(folder), torch_dtype=dtype)
        finally:
            if shown:
                hf_logging.enable_progress_bar()
        return cls(model, Wav2Vec2FeatureExtractor.from_pretrained(str(folder)))

    def _input(self, samples: np.ndarray) -> torch.Tensor:
        values = self.feature_extractor(
            np.asarray(samples, dtype=np.float32), sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_values
        p = next(self.model.parameters())
        return values.to(device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def last_hidden_state(self, samples: np.ndarray) -> torch.Tensor:
        """(N, C) at the CNN's own rate (preview)."""
        return self.model(self._input(samples)).last_hidden_state[0]

    @torch.no_grad()
    def layer_states(self, samples: np.ndarray, n_frames: int) -> torch.Tensor:
        """(n_frames, layers, C): every encoder layer's output, one vector per video frame (flash)."""
        with self._cnn_resampled_to(n_frames), self._layer_outputs() as layers:
            self.model(self._input(samples))
        return torch.stack([layer[0] for layer in layers], dim=1)

    @contextlib.contextmanager
    def _cnn_resampled_to(self, n: int) -> Iterator[None]:
        def resample(_module, _args, out: torch.Tensor) -> torch.Tensor:
            return F.interpolate(out, size=n, mode="linear", align_corners=True)  # (B, C, T) -> (B, C, n)

        handle = self.model.feature_extractor.register_forward_hook(resample)
        try:
            yield
        finally:
            handle.remove()

    @contextlib.contextmanager
    def _layer_outputs(self) -> Iterator[list[torch.Tensor]]:
        outputs: list[torch.Tensor] = []

        def keep(_module, _args, out) -> None:
            outputs.append(out[0] if isinstance(out, tuple) else out)

        handles = [layer.register_forward_hook(keep) for layer in self.model.encoder.layers]
        try:
            yield outputs
        finally:
            for h in handles:
                h.remove()


def flash_audio_windows(states: torch.Tensor, window: int = FLASH_WINDOW) -> torch.Tensor:
    """(F, layers, C) per-frame states -> (F, window, layers, C): frame i sees frames i-2..i+2, clamped."""
    n = states.shape[0]
    offsets = torch.arange(window, device=states.device) - window // 2
    index = (torch.arange(n, device=states.device)[:, None] + offsets[None, :]).clamp(0, n - 1)
    return states[index]
