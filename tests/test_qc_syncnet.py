"""LatentSync's SyncNet in talkreel: tiny random weights of the real classes, strict loading, the LSE figures,
and `talkreel qc --sync` without weights (parity with upstream's code on random weights is checked outside the
repository: docs/qc.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from cli.main import app
from pipelines.errors import InputError
from pipelines.qc.sync import lse_figures, sync_figures
from pipelines.qc.syncnet import (
    MEL_WINDOW,
    SyncNet,
    expected_keys,
    faces_tensor,
    load_syncnet,
    mel_spectrogram,
    mel_window,
    tiny_config,
)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = SyncNet(tiny_config())
    path = tmp_path_factory.mktemp("syncnet") / "syncnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, model


def test_full_network_keys():
    keys = expected_keys()
    assert len(keys) == 266  # the key count of upstream's StableSyncNet with syncnet_16_pixel_attn.yaml
    assert keys["visual_encoder.conv_in.weight"] == (64, 48, 3, 3)
    assert keys["audio_encoder.down_blocks.4.attn.to_q.weight"] == (256, 256)
    assert keys["audio_encoder.down_blocks.6.ff.net.0.proj.weight"] == (4096, 512)  # GEGLU: 2 x 4 x 512
    assert sum(int(np.prod(s)) for s in keys.values()) == 401_306_080


def test_strict_load_and_unit_embeddings(tiny_weights, tmp_path):
    path, model = tiny_weights
    loaded = load_syncnet(path, tiny_config())
    faces, mel = torch.rand(2, 48, 128, 256) * 2 - 1, torch.rand(2, 1, 80, MEL_WINDOW) * 8 - 4
    with torch.no_grad():
        v, a = loaded(faces, mel)
        v0, a0 = model(faces, mel)
    torch.testing.assert_close(v, v0)
    torch.testing.assert_close(a, a0)
    assert v.shape == a.shape == (2, 32)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(2))
    state = {k: v for k, v in model.state_dict().items() if "attn.to_q" not in k}
    state["visual_encoder.extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(broken))
    with pytest.raises(InputError, match=r"missing 4 .*unexpected 1 \(visual_encoder.extra.weight\)"):
        load_syncnet(broken, tiny_config())


def test_inputs():
    sr = 16000
    t = np.arange(sr) / sr
    mel = mel_spectrogram((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    assert mel.shape == (80, 81) and mel.dtype == np.float32
    assert mel.min() >= -4 and mel.max() <= 4
    peak = mel[:, 40].argmax()
    assert mel[peak, 40] > mel[:, 40].mean() + 2  # a 440 Hz tone lights one band up
    assert mel_window(mel, 0, 25.0).shape == (80, MEL_WINDOW)
    assert mel_window(mel, 20, 25.0) is None  # past the end
    faces = [np.full((256, 256, 3), i, np.uint8) for i in range(16)]
    x = faces_tensor(faces)
    assert x.shape == (48, 128, 256)
    assert float(x[3, 0, 0]) == pytest.approx(1 / 127.5 - 1)  # frame 1, red: frame-major channels


def test_lse_figures_find_the_offset():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # the video shows at window s what the audio has at s + 3: the mouth is 3 frames early
    visual = {s: emb[s + 3] for s in range(0, 150, 4)}
    audio = {s: emb[s] for s in range(200)}
    fig = lse_figures(visual, audio, 25.0, 15)
    assert fig["sync_offset_ms"] == -120.0 and fig["sync_distance"] == 0.0
    assert fig["sync_confidence"] > 1.0
    unrelated = lse_figures({s: emb[(7 * s + 11) % 200] for s in range(0, 150, 4)}, audio, 25.0, 15)
    assert unrelated["sync_confidence"] < fig["sync_confidence"] / 4


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tests.project_helpers import make_project

    root = tmp_path_factory.mktemp("syncclip")
    jobs = make_project(
        root,
        {
            "one": 'kind: summary\npersona: test\naudio: {text: "Hello there, this is a test of lip sync.", voice: en}\noutput: {size: [256, 256]}\n'
        },
    )
    result = CliRunner().invoke(app, ["render", str(jobs), "--out", str(root / "out"), "--no-qc", "--quiet"])
    assert result.exit_code == 0, result.output
    return root / "out" / "one.mp4"


def test_sync_on_a_rendered_clip_with_tiny_weights(tiny_weights, clip):
    _, model = tiny_weights
    fig = sync_figures(clip, model, stride=8)
    assert fig["sync_windows"] >= 5 and fig["frames"] > 60
    for key in ("sync_confidence", "sync_distance", "sync_similarity"):
        assert np.isfinite(fig[key])
    assert 0 <= fig["sync_distance"] <= 2 and abs(fig["sync_offset_ms"]) <= 600


def test_qc_sync_without_weights_exits_4(clip, tmp_path, monkeypatch):
    monkeypatch.setenv("TALKREEL_WEIGHTS", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["qc", str(clip), "--sync"])
    assert result.exit_code == 4
    assert "run: talkreel weights download syncnet" in result.output
