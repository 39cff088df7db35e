"""Pickled checkpoints -> safetensors, once, with a strict key/shape check."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from pipelines.errors import InputError
from pipelines.weights import convert
from tests import weights_helpers as wh


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_latentsync_unet_converts_once_with_the_same_tensors(tmp_path):
    src = _write(tmp_path, "latentsync_unet.pt", wh.latentsync_unet_pt(seed=3))
    out = tmp_path / convert.output_rel("latentsync_unet", "latentsync_unet.pt")
    sha = wh.sha256(src.read_bytes())

    assert convert.convert(
        "latentsync_unet",
        src,
        out,
        source_sha256=sha,
        source_repo="ByteDance/LatentSync-1.6",
        expected_keys=wh.TINY_UNET_KEYS,
    )
    original = torch.load(src, weights_only=True)["state_dict"]
    converted = load_file(str(out))
    assert set(converted) == set(wh.TINY_UNET_KEYS)
    for k, v in original.items():
        assert torch.equal(converted[k], v)
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["talkreel_source_sha256"] == sha
    assert meta["talkreel_keys_checked"] == "true"
    assert meta["source_repo"] == "ByteDance/LatentSync-1.6"

    # Converted once: the same source bytes do not convert again; new bytes do.
    mtime = out.stat().st_mtime_ns
    assert not convert.convert(
        "latentsync_unet", src, out, source_sha256=sha, expected_keys=wh.TINY_UNET_KEYS
    )
    assert out.stat().st_mtime_ns == mtime
    src.write_bytes(wh.latentsync_unet_pt(seed=4))
    assert convert.convert(
        "latentsync_unet",
        src,
        out,
        source_sha256=wh.sha256(src.read_bytes()),
        expected_keys=wh.TINY_UNET_KEYS,
    )


def test_unet_key_mismatch_names_missing_unexpected_and_misshapen_keys(tmp_path):
    src = _write(tmp_path, "latentsync_unet.pt", wh.latentsync_unet_pt())
    expected = dict(wh.TINY_UNET_KEYS)
    expected.pop("conv_out.weight")  # -> unexpected in the file
    expected["mid_block.resnets.0.conv1.weight"] = (8, 8, 3, 3)  # -> missing from the file
    expected["conv_in.weight"] = (
        8,
        4,
        3,
        3,
    )  # -> wrong shape (an SD-1.5 conv_in, not LatentSync's 13 channels)
    out = tmp_path / "latentsync_unet.safetensors"
    with pytest.raises(InputError) as err:
        convert.convert("latentsync_unet", src, out, source_sha256="0" * 64, expected_keys=expected)
    msg = str(err.value)
    assert "1 missing (e.g. mid_block.resnets.0.conv1.weight)" in msg
    assert "1 unexpected (e.g. conv_out.weight)" in msg
    assert "conv_in.weight [8, 13, 3, 3] != expected [8, 4, 3, 3]" in msg
    assert str(src) in msg
    assert not out.exists()


def test_unet_checkpoint_without_state_dict_is_refused(tmp_path):
    src = _write(tmp_path, "latentsync_unet.pt", wh._torch_bytes({"weights": {"a": torch.zeros(1)}}))
    with pytest.raises(InputError, match="state_dict"):
        convert.convert("latentsync_unet", src, tmp_path / "o.safetensors", source_sha256="0" * 64)


def test_whisper_keeps_the_encoder_and_writes_dims(tmp_path):
    src = _write(tmp_path, "whisper/tiny.pt", wh.whisper_tiny_pt())
    out = tmp_path / convert.output_rel("whisper", "whisper/tiny.pt")
    assert out.name == "whisper_tiny.safetensors"
    assert convert.convert("whisper", src, out, source_sha256=wh.sha256(src.read_bytes()))
    tensors = load_file(str(out))
    assert {k: tuple(v.shape) for k, v in tensors.items()} == wh.TINY_WHISPER_ENCODER
    assert json.loads(convert.whisper_dims_path(out).read_text()) == wh.TINY_WHISPER_DIMS
    original = torch.load(src, weights_only=True)["model_state_dict"]
    assert torch.equal(tensors["encoder.conv1.weight"], original["encoder.conv1.weight"])


def test_whisper_with_a_missing_encoder_key_is_refused(tmp_path):
    src = _write(tmp_path, "tiny.pt", wh.whisper_tiny_pt(drop="encoder.blocks.0.attn.key.weight"))
    with pytest.raises(InputError, match=r"1 missing \(e.g. encoder.blocks.0.attn.key.weight\)"):
        convert.convert("whisper", src, tmp_path / "whisper_tiny.safetensors", source_sha256="0" * 64)


def test_pickle_with_code_is_refused_by_weights_only(tmp_path):
    src = _write(tmp_path, "latentsync_unet.pt", wh.malicious_pt())
    with pytest.raises(InputError, match="never unpickles") as info:
        convert.convert("latentsync_unet", src, tmp_path / "o.safetensors", source_sha256="0" * 64)
    assert "False" not in str(info.value)  # never advise weights_only=False


def test_a_damaged_pickle_never_advises_unsafe_loading(tmp_path):
    src = _write(tmp_path, "latentsync_unet.pt", b"\x80\x02garbage" * 10)
    with pytest.raises(InputError, match="not a plain tensor checkpoint") as info:
        convert.convert("latentsync_unet", src, tmp_path / "o.safetensors", source_sha256="0" * 64)
    assert "weights_only=False" not in str(info.value) and "False" not in str(info.value)


def test_truncated_pickle_is_a_clear_error(tmp_path):
    data = wh.latentsync_unet_pt()
    src = _write(tmp_path, "latentsync_unet.pt", data[: len(data) // 2])
    with pytest.raises(InputError, match="latentsync_unet.pt"):
        convert.convert("latentsync_unet", src, tmp_path / "o.safetensors", source_sha256="0" * 64)


def test_flat_state_dict_and_transformers_bin_names(tmp_path):
    src = _write(tmp_path, "pytorch_model.bin", wh.flat_state_dict_pth(seed=5))
    rel = convert.output_rel("state_dict", "pytorch_model.bin")
    assert rel == "model.safetensors"
    assert convert.output_rel("state_dict", "denoising_unet.pth") == "denoising_unet.safetensors"
    out = tmp_path / rel
    assert convert.convert("state_dict", src, out, source_sha256="1" * 64)
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["talkreel_keys_checked"] == "false"
        assert set(f.keys()) == {"conv_in.weight", "conv_in.bias"}


def test_tied_tensors_are_saved(tmp_path):
    shared = torch.randn(4)
    src = _write(tmp_path, "m.pth", wh._torch_bytes({"a": shared, "b": shared}))
    out = tmp_path / "m.safetensors"
    convert.convert("state_dict", src, out, source_sha256="2" * 64)
    loaded = load_file(str(out))
    assert torch.equal(loaded["a"], loaded["b"])


def _engine_loaders():
    from pipelines.audio_features.encoder import load_encoder
    from pipelines.engines.echomimic_v2.checkpoints import read_state_dict
    from pipelines.engines.latentsync.unet import load_unet_file as latentsync_unet
    from pipelines.engines.musetalk.unet import load_unet as musetalk_unet

    return {"whisper": load_encoder, "echomimic-v2": read_state_dict, "latentsync": lambda p: latentsync_unet(p, "latentsync-1.6"),
            "musetalk": musetalk_unet}  # fmt: skip


@pytest.mark.parametrize("name", ["whisper", "echomimic-v2", "latentsync", "musetalk"])
def test_engine_loaders_of_pickles_refuse_code_without_advising_unsafe_loading(tmp_path, name):
    """The Python API's loaders of unconverted .pt/.pth files go through the same refusal as `weights import`."""
    src = _write(tmp_path, "model.pt", wh.malicious_pt())
    with pytest.raises(InputError, match="never unpickles") as info:
        _engine_loaders()[name](src)
    assert "False" not in str(info.value)
