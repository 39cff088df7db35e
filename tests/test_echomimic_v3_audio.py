import numpy as np
import pytest
import torch
import torch.nn.functional as F
from media_helpers import make_audio
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from pipelines.engines.echomimic_v3.audio import (
    SAMPLE_RATE,
    Wav2Vec2Features,
    flash_audio_windows,
    loudness_normalised,
)
from pipelines.media.audio import load_audio, measure_loudness

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)

# wav2vec2-base's CNN (7 convs, 320x down) at toy width, 3 encoder layers
TINY_WAV2VEC2 = Wav2Vec2Config(
    hidden_size=16,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=24,
    conv_dim=(8,) * 7,
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=2,
)


@pytest.fixture(scope="module")
def features():
    torch.manual_seed(0)
    model = Wav2Vec2Model(TINY_WAV2VEC2)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, do_normalize=True)
    return Wav2Vec2Features(model, extractor)


def _speechlike(seconds=1.3, seed=0):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.1 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t)) + 0.02 * noise).astype(
        np.float32
    )


def test_layer_states_at_the_cnn_rate_are_the_models_hidden_states(features):
    audio = _speechlike()
    values = features._input(audio)
    natural = features.model.feature_extractor(values).shape[-1]
    with torch.no_grad():
        reference = features.model(values, output_hidden_states=True).hidden_states
    states = features.layer_states(audio, natural)
    assert states.shape == (natural, 3, 16)
    # transformers' first hidden state is the encoder input; the rest are the layers' outputs, as upstream reads them
    assert torch.allclose(states, torch.stack([h[0] for h in reference[1:]], dim=1), atol=1e-6)
    assert torch.allclose(features.last_hidden_state(audio), reference[-1][0], atol=1e-6)


def test_cnn_features_are_resampled_to_one_per_video_frame_before_the_encoder(features):
    audio = _speechlike()
    model = features.model
    frames = 31
    hooks_before = [len(layer._forward_hooks) for layer in model.encoder.layers]
    with torch.no_grad():
        cnn = model.feature_extractor(features._input(audio))
        resampled = F.interpolate(cnn, size=frames, mode="linear", align_corners=True).transpose(1, 2)
        hidden, _ = model.feature_projection(resampled)
        expected = model.encoder(hidden).last_hidden_state[0]
    states = features.layer_states(audio, frames)
    assert states.shape == (frames, 3, 16)
    assert torch.allclose(states[:, -1], expected, atol=1e-6)
    # our hooks are gone afterwards (transformers keeps its own output-capturing ones)
    assert not model.feature_extractor._forward_hooks
    assert [len(layer._forward_hooks) for layer in model.encoder.layers] == hooks_before


def test_flash_windows_centre_each_frame_and_clamp_at_the_ends():
    states = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1).expand(6, 2, 3)
    windows = flash_audio_windows(states)
    assert windows.shape == (6, 5, 2, 3)
    assert windows[:, :, 0, 0].tolist() == [
        [0, 0, 0, 1, 2],
        [0, 0, 1, 2, 3],
        [0, 1, 2, 3, 4],
        [1, 2, 3, 4, 5],
        [2, 3, 4, 5, 5],
        [3, 4, 5, 5, 5],
    ]


def test_loudness_normalised_reaches_minus_23_lufs_by_ffmpegs_meter(tmp_path):
    wav = make_audio(tmp_path / "noise.wav", duration=3.0, rate=SAMPLE_RATE, kind="noise", volume_db=-31.0)
    samples = load_audio(wav, SAMPLE_RATE)
    before = measure_loudness(wav).integrated
    raw = tmp_path / "normed.f32"
    loudness_normalised(samples).astype("<f4").tofile(raw)
    after = measure_loudness(["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", str(raw)]).integrated
    assert before < -30.0
    assert after == pytest.approx(-23.0, abs=0.3)


def test_silence_is_left_alone():
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    assert np.array_equal(loudness_normalised(silence), silence)
    tiny = np.full(SAMPLE_RATE, 1e-6, dtype=np.float32)
    assert np.array_equal(loudness_normalised(tiny), tiny)
