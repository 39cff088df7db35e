"""MuseTalk's model path on tiny random modules of the real classes: UNet (strict loading, full-size key set),
whisper windows, the one-step pipeline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pipelines.engines.musetalk import audio as mt_audio
from pipelines.engines.musetalk.pipeline import MuseTalkPipeline
from pipelines.engines.musetalk.unet import (
    UNET_CONFIG,
    audio_positions,
    build_unet,
    load_state_strict,
    load_unet,
    read_config,
)
from tests.musetalk_helpers import (
    TINY_LAYERS,
    TINY_WIDTH,
    tiny_unet,
    tiny_vae,
    unet_files,
    whisper_folder,
)


def test_full_size_unet_keys_equal_upstream_reference(shared_dir):
    tsv = shared_dir / "reference" / "musetalk_v15_unet_keys.tsv"
    if not tsv.is_file():
        pytest.skip("no musetalk_v15_unet_keys.tsv")
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
    expected = {k: tuple(json.loads(shape)) for k, shape, _ in rows}
    with torch.device("meta"):
        unet = build_unet(UNET_CONFIG)
    got = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    assert got == expected
    assert sum(v.numel() for v in unet.parameters()) == 849_947_844


def test_unet_files_load_strictly_and_reject_other_checkpoints(tmp_path):
    folder = unet_files(tmp_path / "musetalkV15", seed=3)
    unet = load_unet(folder / "unet.pth", folder / "musetalk.json")
    ref = torch.load(folder / "unet.pth", weights_only=True)
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in ref.items())
    assert read_config(folder / "musetalk.json")["cross_attention_dim"] == TINY_WIDTH

    fresh = tiny_unet(seed=9)
    load_state_strict(fresh, {f"module.{k}": v for k, v in ref.items()})  # DataParallel prefix
    assert torch.equal(fresh.conv_in.weight, ref["conv_in.weight"])
    broken = dict(ref)
    broken.pop("conv_out.bias")
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="1 missing .*conv_out.bias.*1 unexpected"):
        load_state_strict(fresh, broken)
    wrong = dict(ref, **{"conv_in.weight": torch.zeros(8, 4, 3, 3)})
    with pytest.raises(ValueError, match="1 with other shapes"):
        load_state_strict(fresh, wrong)


def test_audio_positions_are_upstreams_interleaved_table():
    pe = audio_positions(50, 8)
    assert pe.shape == (50, 8)
    assert torch.allclose(pe[0], torch.tensor([0.0, 1.0] * 4))
    # channel pair 1 of position 3: frequency 10000 ** (-2 / 8)
    f = 10000 ** (-2 / 8)
    assert pe[3, 2].item() == pytest.approx(math.sin(3 * f), abs=1e-6)
    assert pe[3, 3].item() == pytest.approx(math.cos(3 * f), abs=1e-6)


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    folder = whisper_folder(tmp_path_factory.mktemp("whisper"), seed=1)
    return mt_audio.load_encoder(folder), mt_audio.feature_extractor(folder)


def test_whisper_encoder_loads_the_encoder_part_strictly(tmp_path, whisper):
    encoder, _ = whisper
    state = torch.load(whisper_folder(tmp_path / "w", seed=1) / "pytorch_model.bin", weights_only=True)
    assert any(k.startswith("model.decoder.") for k in state)  # the hub file holds the whole model
    assert torch.equal(encoder.conv1.weight, state["model.encoder.conv1.weight"])
    state.pop("model.encoder.layer_norm.weight")
    with pytest.raises(ValueError, match="1 missing .*layer_norm.weight"):
        mt_audio.load_encoder_state(type(encoder)(encoder.config), state)


def test_audio_windows_follow_upstreams_grid_across_segments(whisper):
    encoder, extractor = whisper
    rng = np.random.default_rng(0)
    seconds = 31.3  # two 30 s segments
    samples = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    win = mt_audio.AudioWindows(encoder, extractor, samples, fps=25)
    assert win.n_steps == math.floor(seconds * 50)
    # the whole file's hidden states, segment by segment, as upstream concatenates them
    whole = []
    for k in range(2):
        piece = samples[k * 480000 : (k + 1) * 480000]
        mel = extractor(piece, sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            hs = encoder(mel, output_hidden_states=True).hidden_states
        whole.append(torch.stack(hs, dim=2)[0])
    whole = torch.cat(whole)[: win.n_steps]
    padded = torch.cat([torch.zeros_like(whole[:4]), whole, torch.zeros_like(whole[:12])])
    frames = [0, 1, 748, 749, 750, 751, mt_audio.n_frames(len(samples), 25) - 1]
    got = win(frames)
    assert got.shape == (len(frames), 10 * (TINY_LAYERS + 1), TINY_WIDTH)
    for row, i in zip(got, frames, strict=True):
        want = padded[2 * i : 2 * i + 10].flatten(0, 1)
        assert torch.allclose(row, want, atol=1e-6), i
    assert torch.count_nonzero(got[0, : 4 * (TINY_LAYERS + 1)]) == 0  # frame 0 starts with the left padding
    assert len(win._segments) <= 2


def test_pipeline_regenerates_faces_deterministically():
    torch.manual_seed(0)
    pipe = MuseTalkPipeline(unet=tiny_unet(1), vae=tiny_vae(2))
    crops = torch.rand(3, 3, 32, 32) * 2 - 1
    masked = pipe.masked(crops)
    assert torch.all(masked[:, :, 16:] == -1) and torch.equal(masked[:, :, :16], crops[:, :, :16])
    windows = torch.randn(3, 10 * (TINY_LAYERS + 1), TINY_WIDTH)
    a = pipe.faces(crops, windows, torch.Generator().manual_seed(5))
    b = pipe.faces(crops, windows, torch.Generator().manual_seed(5))
    c = pipe.faces(crops, windows, torch.Generator().manual_seed(6))
    assert a.shape == crops.shape and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the audio reaches the output (cross-attention is wired)
    d = pipe.faces(crops, windows * 0, torch.Generator().manual_seed(5))
    assert not torch.equal(a, d)
