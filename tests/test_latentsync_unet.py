import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNetMotionModel
from latentsync_helpers import TINY_UNET
from safetensors.torch import save_file

from pipelines.engines.latentsync.unet import (
    N_ELEMENTS,
    N_KEYS,
    UNET_CONFIG,
    CheckpointMismatchError,
    ChunkGroupNorm,
    FrameGroupNorm,
    build_unet,
    diffusers_to_official,
    expected_unet_keys,
    load_unet_file,
    official_state_dict,
    official_to_diffusers,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)


REFERENCE_TSV = (
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "latentsync_unet_keys.tsv"
)


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = build_unet(TINY_UNET).eval()
    # random (not zero-initialised) norms and outputs so every path shows in the result
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _frames_with_different_stats(b=1, c=16, f=4, h=8, w=8):
    torch.manual_seed(1)
    x = torch.randn(b, c, f, h, w)
    return (
        x * torch.linspace(0.5, 3.0, f)[None, None, :, None, None]
        + torch.arange(f)[None, None, :, None, None]
    )


def test_chunk_group_norm_pools_over_the_frames_of_each_batch_element():
    model = _tiny()
    norm = model.down_blocks[0].resnets[0].norm1
    assert isinstance(norm, ChunkGroupNorm)
    x5 = _frames_with_different_stats(b=2)
    flat = x5.transpose(1, 2).reshape(8, 16, 8, 8)  # (B*F, C, H, W) as diffusers carries it
    model.set_num_frames(4)
    got = norm(flat)
    pooled = F.group_norm(x5, 8, norm.weight, norm.bias, norm.eps).transpose(1, 2).reshape(8, 16, 8, 8)
    per_frame = F.group_norm(flat, 8, norm.weight, norm.bias, norm.eps)
    assert torch.allclose(got, pooled, atol=1e-5)
    assert not torch.allclose(got, per_frame, atol=1e-2)
    # statistics never cross batch elements (the CFG halves stay independent)
    model.set_num_frames(4)
    assert torch.allclose(norm(flat[:4]), got[:4], atol=1e-5)
    assert isinstance(model.conv_norm_out, ChunkGroupNorm)


def test_motion_module_group_norm_is_per_frame():
    model = _tiny()
    norm = model.down_blocks[0].motion_modules[0].norm
    assert isinstance(norm, FrameGroupNorm)
    x5 = _frames_with_different_stats()
    got = norm(x5)
    for i in range(4):
        one = F.group_norm(x5[:, :, i], 8, norm.weight, norm.bias, norm.eps)
        assert torch.allclose(got[:, :, i], one, atol=1e-5)
    assert not torch.allclose(got, F.group_norm(x5, 8, norm.weight, norm.bias, norm.eps), atol=1e-2)


def test_which_norms_changed_scope():
    model = _tiny()
    resnets = [m for m in model.modules() if type(m).__name__ == "ResnetBlock2D"]
    motions = [m for m in model.modules() if type(m).__name__ == "AnimateDiffTransformer3D"]
    chunk = [m for m in model.modules() if isinstance(m, ChunkGroupNorm)]
    frame = [m for m in model.modules() if isinstance(m, FrameGroupNorm)]
    assert len(chunk) == 2 * len(resnets) + 1 and len(frame) == len(motions) == 4 * 1 + 4 * 2
    # the spatial transformers' norms stay per frame (plain GroupNorm on (B*F, C, H, W)), as in the original
    spatial = model.down_blocks[0].attentions[0].norm
    assert type(spatial) is torch.nn.GroupNorm


def _inputs(f, seed=3, b=1, c=32):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(b, 13, f, 16, 16, generator=g)
    audio = torch.randn(b * f, 50, c, generator=g)
    return sample, audio


def test_model_differs_from_stock_diffusers_only_through_norm_scopes():
    ours = _tiny()
    stock = UNetMotionModel(**{**UNET_CONFIG, **TINY_UNET}).eval()
    stock.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        sample, audio = _inputs(1)
        # one frame: pooled == per frame for both scopes, so the two models agree exactly
        assert torch.allclose(ours(sample, 501, audio).sample, stock(sample, 501, audio).sample, atol=1e-6)
        sample, audio = _inputs(4)
        assert not torch.allclose(
            ours(sample, 501, audio).sample, stock(sample, 501, audio).sample, atol=1e-4
        )


def test_cfg_batch_elements_are_independent():
    model = _tiny()
    sample, audio = _inputs(4, b=2)
    with torch.no_grad():
        both = model(sample, 301, audio).sample
        first = model(sample[:1], 301, audio[:4]).sample
    assert both.shape == (2, 4, 4, 16, 16)
    assert torch.allclose(both[:1], first, atol=1e-5)


def test_chunk_longer_than_positional_encoding_is_refused():
    model = _tiny()
    with pytest.raises(ValueError, match="at most 24"):
        model.set_num_frames(25)


def test_key_mapping_both_ways():
    off = "up_blocks.2.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_k.weight"
    dif = "up_blocks.2.motion_modules.1.transformer_blocks.0.attn2.to_k.weight"
    assert official_to_diffusers(off) == dif and diffusers_to_official(dif) == [off]
    for o, d in [
        (
            "down_blocks.0.motion_modules.0.temporal_transformer.norm.weight",
            "down_blocks.0.motion_modules.0.norm.weight",
        ),
        (
            "down_blocks.1.motion_modules.1.temporal_transformer.transformer_blocks.0.norms.1.bias",
            "down_blocks.1.motion_modules.1.transformer_blocks.0.norm2.bias",
        ),
        (
            "up_blocks.0.motion_modules.2.temporal_transformer.transformer_blocks.0.ff_norm.weight",
            "up_blocks.0.motion_modules.2.transformer_blocks.0.norm3.weight",
        ),
        ("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight",) * 2,
    ]:
        assert official_to_diffusers(o) == d and diffusers_to_official(d) == [o]
    pe = "down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe"
    both = diffusers_to_official(pe)
    assert [official_to_diffusers(k) for k in both] == [pe, None]


def test_full_size_counts_on_meta():
    keys = expected_unet_keys(512)
    assert len(keys) == N_KEYS == 1246
    assert sum(math.prod(s) for s in keys.values()) == N_ELEMENTS == 1_267_944_644
    assert keys["conv_in.weight"] == (320, 13, 3, 3)
    assert expected_unet_keys(256) == keys
    motion = {k: s for k, s in keys.items() if ".motion_modules." in k}
    assert len(motion) == 560 and sum(math.prod(s) for s in motion.values()) == 417_982_400


@pytest.mark.skipif(not REFERENCE_TSV.exists(), reason="reference key list not present (../shared)")
def test_full_size_keys_and_shapes_equal_reference_list():
    ref = {}
    for line in REFERENCE_TSV.read_text().splitlines():
        key, shape = line.split("\t")
        ref[key] = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
    assert expected_unet_keys(512) == ref


def _save_official(model, path, metadata=None):
    sd = {k: v.contiguous().clone() for k, v in official_state_dict(model).items()}
    save_file(sd, str(path), metadata=metadata)
    return sd


def test_strict_load_round_trip_and_refusals(tmp_path):
    src = _tiny(5)
    path = tmp_path / "latentsync_unet.safetensors"
    sd = _save_official(src, path, metadata={"engine": "latentsync-1.6"})
    loaded = load_unet_file(path, "latentsync-1.6", config=TINY_UNET)
    sample, audio = _inputs(3)
    with torch.no_grad():
        assert torch.equal(loaded(sample, 11, audio).sample, src(sample, 11, audio).sample)
    with pytest.raises(CheckpointMismatchError, match="holds latentsync-1.6 weights"):
        load_unet_file(path, "latentsync-1.5", config=TINY_UNET)
    # what the weights converter records: the hub repo the file came from
    _save_official(src, tmp_path / "v15.safetensors", metadata={"source_repo": "ByteDance/LatentSync-1.5"})
    with pytest.raises(CheckpointMismatchError, match="holds latentsync-1.5 weights"):
        load_unet_file(tmp_path / "v15.safetensors", "latentsync-1.6", config=TINY_UNET)
    assert load_unet_file(tmp_path / "v15.safetensors", "latentsync-1.5", config=TINY_UNET) is not None
    # the original pickle layout {"state_dict": ...} loads the same way (weights_only)
    pt = tmp_path / "latentsync_unet.pt"
    torch.save({"state_dict": sd, "global_step": 7}, pt)
    assert load_unet_file(pt, "latentsync-1.5", config=TINY_UNET) is not None
    broken = dict(sd)
    broken.pop("up_blocks.1.motion_modules.1.temporal_transformer.proj_out.bias")
    save_file(broken, str(tmp_path / "b.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="1 missing"):
        load_unet_file(tmp_path / "b.safetensors", "latentsync-1.6", config=TINY_UNET)
    other = dict(sd)
    other["conv_in.weight"] = torch.zeros(16, 9, 3, 3)  # an inpainting UNet's input, say
    save_file(other, str(tmp_path / "c.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="conv_in takes 9 channels"):
        load_unet_file(tmp_path / "c.safetensors", "latentsync-1.6", config=TINY_UNET)


def test_full_size_flops_per_frame_match_the_reference_count():
    from torch.utils.flop_counter import FlopCounterMode

    unet = build_unet(device="meta").eval()
    x = torch.randn(1, 13, 16, 32, 32, device="meta")
    audio = torch.randn(16, 50, 384, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor(501, device="meta"), encoder_hidden_states=audio)
    # latentsync.md §11: 0.253 TFLOP per frame at 256 px, counted on the upstream model
    assert abs(counter.get_total_flops() / 16 / 1e12 - 0.2532) < 0.0005
