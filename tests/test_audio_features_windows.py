import numpy as np
import pytest
import torch

from pipelines.audio_features.encoder import EncoderDims, WhisperAudioEncoder, load_encoder, sinusoids
from pipelines.audio_features.features import (
    _crossfade_weights,
    encode_speech,
    frame_step_indices,
    frame_windows,
    padded_window,
    window_starts,
)
from pipelines.audio_features.mel import log_mel, mel_filterbank

SMALL = EncoderDims(n_mels=80, n_ctx=1500, n_state=32, n_head=2, n_layer=4)
# the window rules are stated in the encoder's own context length; 3 s windows keep these tests fast
SHORT = EncoderDims(n_mels=80, n_ctx=150, n_state=32, n_head=2, n_layer=4)


def _encoder(seed=0, dims=SHORT):
    torch.manual_seed(seed)
    return WhisperAudioEncoder(dims).eval()


def test_mel_filterbank_is_slaney_triangles():
    fb = mel_filterbank()
    assert fb.shape == (80, 201) and fb.dtype == np.float32
    assert (fb >= 0).all()
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()
    # each triangle rises then falls: a single run of nonzero bins
    for row in fb:
        nz = np.flatnonzero(row)
        assert len(nz) >= 1 and (np.diff(nz) == 1).all()
    # Slaney normalisation: every filter has unit area in Hz (bins are 40 Hz apart); wide filters check it well
    areas = fb.sum(axis=1) * 40.0
    assert np.allclose(areas[50:], 1.0, rtol=0.02)
    # below 1 kHz the scale is linear: equal spacing of the filter edges in Hz
    peaks_hz = fb[:12].argmax(axis=1) * 40.0
    assert np.ptp(np.diff(peaks_hz)) <= 40.0


def test_log_mel_frames_clamp_and_tone():
    sr = 16000
    t = np.arange(sr * 2) / sr
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    tone[: sr // 2] = 0.0  # silence then a tone: silence sits at the global floor
    mel = log_mel(tone)
    assert mel.shape == (80, len(tone) // 160)
    # clamp to global max - 8, then (x + 4) / 4: the range is at most 2
    assert float(mel.max() - mel.min()) <= 2.0 + 1e-6
    assert torch.isclose(mel[:, 5].max(), mel.min())
    peak_bin = int(mel[:, 150].argmax())
    centre_hz = mel_filterbank()[peak_bin].argmax() * 40.0
    assert abs(centre_hz - 1000) < 120
    # the clamp is global: silence sits exactly 8 decades (2 after scaling) below the file's loudest bin
    assert torch.isclose(mel.min(), mel.max() - 2.0)


def test_window_starts_and_zero_padding():
    assert window_starts(6500, 3000, overlap=False) == [0, 3000, 6000]
    assert window_starts(3000, 3000, overlap=False) == [0]
    assert window_starts(6500, 3000, overlap=True) == [0, 2000, 4000]
    assert window_starts(450, 300, overlap=True) == [0, 200]
    mel = torch.ones(80, 3500)
    w = padded_window(mel, 3000, 3000)
    assert w.shape == (80, 3000)
    assert (w[:, :500] == 1).all() and (w[:, 500:] == 0).all()


def test_frame_step_indices_centre_and_clamp():
    assert frame_step_indices(0, 100).tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5]
    assert frame_step_indices(10, 100).tolist() == list(range(16, 26))
    assert frame_step_indices(49, 100).tolist() == [94, 95, 96, 97, 98, 99, 99, 99, 99, 99]


def test_frame_windows_step_major_layer_minor():
    n_steps, layers, width = 40, 5, 3
    feats = torch.zeros(n_steps, layers, width)
    for s in range(n_steps):
        for layer in range(layers):
            feats[s, layer] = 100 * s + layer
    win = frame_windows(feats, range(3, 5))
    assert win.shape == (2, 50, 3)
    rows = win[0, :, 0].tolist()
    expected = [100 * s + layer for s in range(2, 12) for layer in range(layers)]
    assert rows == expected


def test_encoder_shapes_and_parity_windows():
    enc = _encoder()
    sr = 16000
    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal(int(sr * 4.33))).astype(np.float32)
    feats = encode_speech(enc, samples)
    n_mel = len(samples) // 160
    assert feats.shape == (n_mel // 2, 5, 32)
    # the same thing by hand: two independent windows, the second zero-padded in log-mel, int(len/2) steps kept
    mel = log_mel(samples)
    with torch.no_grad():
        a = enc.hidden_states(mel[None, :, :300])[0]
        tail = torch.zeros(80, 300)
        tail[:, : n_mel - 300] = mel[:, 300:]
        b = enc.hidden_states(tail[None])[0][: (n_mel - 300) // 2]
    assert torch.allclose(feats, torch.cat([a, b]), atol=1e-5)
    # the stem state is the conv output plus the sinusoidal positions (no ln_post anywhere)
    assert not torch.allclose(feats[:, 4], feats[:, 3])


def test_overlap_windows_crossfade():
    w = _crossfade_weights(2500, [0, 1000], [1500, 1500])
    total = np.zeros(2500)
    total[:1500] += w[0]
    total[1000:] += w[1]
    assert np.allclose(total, 1.0)
    assert w[0][0] == 1.0 and w[1][-1] == 1.0 and w[0][-1] < 0.01
    enc = _encoder(1)
    samples = (0.1 * np.random.default_rng(1).standard_normal(int(16000 * 4.5))).astype(np.float32)
    plain = encode_speech(enc, samples)
    over = encode_speech(enc, samples, overlap_windows=True)
    assert over.shape == plain.shape
    # before the first shared span both modes read the same window
    assert torch.allclose(over[:100], plain[:100], atol=1e-5)
    # parity mode jumps at the window boundary; the overlapped features do not use the window edge there
    assert not torch.allclose(over[140:160], plain[140:160])
    short = samples[: 16000 * 1]
    assert torch.allclose(
        encode_speech(enc, short, overlap_windows=True), encode_speech(enc, short), atol=1e-6
    )


def _openai_checkpoint(enc: WhisperAudioEncoder) -> dict:
    state = {f"encoder.{k}": v.clone() for k, v in enc.state_dict().items()}
    state["decoder.token_embedding.weight"] = torch.zeros(10, SMALL.n_state)
    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 32, "n_audio_head": 2, "n_audio_layer": 4}
    return {"dims": dims, "model_state_dict": state}


def test_strict_loading_of_openai_checkpoint(tmp_path):
    src = _encoder(2, SMALL)
    expected = {
        "conv1.weight",
        "conv2.bias",
        "positional_embedding",
        "blocks.3.attn.key.weight",
        "blocks.0.mlp.2.bias",
        "blocks.1.attn_ln.weight",
        "ln_post.bias",
    }
    assert expected <= set(src.state_dict())
    assert "blocks.0.attn.key.bias" not in src.state_dict()
    assert torch.allclose(src.positional_embedding, sinusoids(1500, 32))
    path = tmp_path / "tiny.pt"
    torch.save(_openai_checkpoint(src), path)
    loaded = load_encoder(path)
    assert loaded.dims == SMALL
    for k, v in src.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    from safetensors.torch import save_file

    st = tmp_path / "whisper.safetensors"
    save_file(_openai_checkpoint(src)["model_state_dict"], str(st), metadata={"n_audio_head": "2"})
    assert load_encoder(st).dims == SMALL
    broken = _openai_checkpoint(src)
    del broken["model_state_dict"]["encoder.blocks.2.mlp_ln.weight"]
    with pytest.raises(ValueError, match="1 missing"):
        _encoder(0, SMALL).load_openai_state_dict(broken["model_state_dict"])


def test_lazy_features_match_the_whole_file_and_hold_few_windows():
    from pipelines.audio_features.features import SpeechFeatures

    enc = _encoder(4)
    samples = (0.1 * np.random.default_rng(4).standard_normal(16000 * 7)).astype(np.float32)
    # encode_speech itself goes through SpeechFeatures; here the on-demand path with its small window store
    whole = encode_speech(enc, samples, overlap_windows=True)
    lazy = SpeechFeatures(enc, samples, overlap_windows=True, keep=2)
    frames = [0, 70, 76, 124, len(samples) // 640 - 1]
    assert torch.allclose(lazy.frame_windows(frames), frame_windows(whole, frames), atol=1e-6)
    assert len(lazy._held) <= 2
