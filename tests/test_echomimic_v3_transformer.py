from pathlib import Path

import pytest
import torch
from echomimic_v3_helpers import TINY_TRANSFORMER, tiny_transformer

from pipelines.engines.echomimic_v3.transformer import (
    AudioContext,
    AudioCrossAttnProcessor,
    CheckpointMismatchError,
    EchoMimicV3Transformer3DModel,
    build_transformer,
    count_parameters,
    diffusers_to_native,
    flash_frame_windows,
    load_native_weights,
    native_state_dict,
    native_to_diffusers,
    preview_audio_windows,
    preview_window_ranges,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)

# upstream_keys.md: the full models' parameter counts (WanTransformerAudioMask3DModel of each variant)
PARAMETERS = {"preview": 1_707_215_168, "flash": 1_863_772_992}


def _inputs(variant, frames=5, seed=1, batch=1):
    """Video frames 4k+1 -> (frames-1)/4+1 latent frames of 4x6 latents (2x3 patches)."""
    g = torch.Generator().manual_seed(seed)
    t = (frames - 1) // 4 + 1
    cfg = TINY_TRANSFORMER
    x = torch.randn(batch, cfg["in_channels"], t, 4, 6, generator=g)
    text = torch.randn(batch, 512, cfg["text_dim"], generator=g)
    image = torch.randn(batch, 257, cfg["image_dim"], generator=g)
    if variant == "preview":
        audio = torch.randn(batch, 2 * frames, cfg["audio_dim"], generator=g)
    else:
        audio = torch.randn(batch, frames, 5, cfg["audio_layers"], cfg["audio_dim"], generator=g)
    return x, torch.tensor([700.0] * batch), text, image, audio


def _run(model, x, t, text, image, audio, **kw):
    with torch.no_grad():
        return model(x, t, text, image, audio_embeds=audio, **kw).sample


@pytest.mark.parametrize("variant", ["preview", "flash"])
def test_full_size_parameter_count_is_upstreams(variant):
    model = build_transformer(variant, device="meta")
    assert count_parameters(model) == PARAMETERS[variant]
    assert model.config.num_layers == 30 and model.config.in_channels == 36


@pytest.mark.parametrize("variant", ["preview", "flash"])
def test_full_size_keys_and_shapes_equal_the_reference_list(variant, shared_dir):
    tsv = shared_dir / "reference" / f"echomimic_v3_{variant}_transformer_keys.tsv"
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
    reference = {k: tuple(int(n) for n in shape.strip("[]").split(",")) for k, shape, _ in rows}
    model = build_transformer(variant, device="meta")
    assert {k: tuple(v.shape) for k, v in native_state_dict(model).items()} == reference


def test_native_names_map_both_ways_with_the_norm_swap():
    model = build_transformer("flash", TINY_TRANSFORMER, device="meta")
    for key in model.state_dict():
        assert native_to_diffusers(diffusers_to_native(key)) == key
    # upstream's norm3 is the affine cross-attention norm, diffusers' norm2
    assert native_to_diffusers("blocks.3.norm3.weight") == "blocks.3.norm2.weight"
    assert native_to_diffusers("blocks.0.cross_attn.k_img.weight") == "blocks.0.attn2.add_k_proj.weight"
    assert native_to_diffusers("blocks.0.cross_attn.k_audio.bias") == "blocks.0.attn2.k_audio.bias"
    assert native_to_diffusers("head.modulation") == "scale_shift_table"
    assert native_to_diffusers("blocks.1.modulation") == "blocks.1.scale_shift_table"


@pytest.mark.parametrize("variant", ["preview", "flash"])
def test_strict_native_load_reproduces_the_model(variant):
    source = tiny_transformer(variant, seed=0)
    target = build_transformer(variant, TINY_TRANSFORMER).eval()
    load_native_weights(target, native_state_dict(source))
    inputs = _inputs(variant)
    assert torch.equal(_run(source, *inputs), _run(target, *inputs))


def test_strict_load_refuses_missing_extra_reshaped_and_other_variant_weights():
    model = build_transformer("preview", TINY_TRANSFORMER)
    good = native_state_dict(tiny_transformer("preview"))
    missing = {k: v for k, v in good.items() if k != "blocks.1.norm3.bias"}
    with pytest.raises(CheckpointMismatchError, match="1 missing"):
        load_native_weights(model, missing)
    with pytest.raises(CheckpointMismatchError, match="1 unexpected"):
        load_native_weights(model, {**good, "blocks.0.cross_attn.q_audio.weight": torch.zeros(24, 24)})
    reshaped = {**good, "patch_embedding.weight": torch.zeros(24, 16, 1, 2, 2)}
    with pytest.raises(CheckpointMismatchError, match="1 with other shapes"):
        load_native_weights(model, reshaped)
    with pytest.raises(CheckpointMismatchError, match="holds flash audio weights"):
        load_native_weights(model, native_state_dict(tiny_transformer("flash")))


@pytest.mark.parametrize("variant", ["preview", "flash"])
def test_output_shape_and_the_audio_changes_it(variant):
    model = tiny_transformer(variant)
    x, t, text, image, audio = _inputs(variant, frames=9)
    out = _run(model, x, t, text, image, audio)
    assert out.shape == (1, 4, 3, 4, 6)
    assert not torch.allclose(out, _run(model, x, t, text, image, audio * 2.0))
    assert not torch.allclose(out, _run(model, x, t, text, image, None))


def test_preview_audio_is_gated_by_the_face_mask_and_scale():
    model = tiny_transformer("preview")
    x, t, text, image, audio = _inputs("preview", frames=9)
    without = _run(model, x, t, text, image, None)
    patches = (4 // 2) * (6 // 2)
    assert torch.allclose(without, _run(model, x, t, text, image, audio, audio_mask=torch.zeros(1, patches)))
    assert torch.allclose(without, _run(model, x, t, text, image, audio, audio_scale=0.0))
    mask = torch.ones(1, patches)
    assert torch.allclose(
        _run(model, x, t, text, image, audio), _run(model, x, t, text, image, audio, audio_mask=mask)
    )


def test_batch_elements_are_independent():
    model = tiny_transformer("flash")
    x, t, text, image, audio = _inputs("flash", batch=2)
    both = _run(model, x, t, text, image, audio)
    one = _run(model, x[1:], t[1:], text[1:], image[1:], audio[1:])
    assert torch.allclose(both[1:], one, atol=1e-5)


def test_each_latent_frame_attends_to_its_own_audio_window_only():
    model = tiny_transformer("flash")
    attn = model.blocks[0].attn2
    g = torch.Generator().manual_seed(3)
    dim = attn.inner_dim
    hidden = torch.randn(1, 2 * 6, dim, generator=g)  # 2 latent frames of 6 tokens
    context = torch.randn(1, 257 + 512, dim, generator=g)
    tokens = torch.randn(2, 4, dim, generator=g)
    changed = tokens.clone()
    changed[1] += 1.0
    proc = AudioCrossAttnProcessor()
    with torch.no_grad():
        a = proc(attn, hidden, context, AudioContext(tokens, 2))
        b = proc(attn, hidden, context, AudioContext(changed, 2))
    assert torch.equal(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_preview_window_grid_is_upstreams():
    # 81 frames, 2 tokens each: [-7, 1], [1, 9], [9, 17], ... (upstream's split_audio_sequence docstring pattern)
    ranges = preview_window_ranges(162)
    assert len(ranges) == 21
    assert ranges[:3] == [(-7, 1), (1, 9), (9, 17)] and ranges[-1] == (153, 161)
    tokens = torch.arange(1, 163, dtype=torch.float32).reshape(1, 162, 1)
    windows = preview_audio_windows(tokens)[0, :, :, 0]
    assert windows.shape == (21, 17)
    # widened by 4 per side; positions outside the clip become zeros at the end of the window
    assert windows[0].tolist() == [1, 2, 3, 4, 5, 6] + [0] * 11
    assert windows[1].tolist() == list(range(1, 15)) + [0] * 3
    assert windows[2].tolist() == list(range(6, 23))
    assert windows[-1].tolist() == list(range(150, 163)) + [0] * 4


def test_flash_windows_take_each_latent_frames_four_video_frames():
    # value = 10 * frame + position inside the frame's 5-wide window
    frames = torch.arange(9)[:, None] * 10 + torch.arange(5)[None, :]
    windows = frames.float().reshape(1, 9, 5, 1, 1)
    first, later = flash_frame_windows(windows)
    assert first[0, 0, :, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert later.shape == (1, 2, 8, 1, 1)
    assert later[0, 0, :, 0, 0].tolist() == [10, 11, 12, 22, 32, 42, 43, 44]
    assert later[0, 1, :, 0, 0].tolist() == [50, 51, 52, 62, 72, 82, 83, 84]
    with pytest.raises(ValueError, match="4k\\+1"):
        flash_frame_windows(windows[:, :8])


def test_config_round_trips_through_a_saved_config(tmp_path: Path):
    model = tiny_transformer("flash")
    model.save_config(tmp_path)
    again = EchoMimicV3Transformer3DModel.from_config(
        EchoMimicV3Transformer3DModel.load_config(tmp_path)
    ).eval()
    again.load_state_dict(model.state_dict())
    assert again.config.variant == "flash" and again.config.num_layers == 2
    inputs = _inputs("flash")
    assert torch.equal(_run(model, *inputs), _run(again, *inputs))


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant"):
        build_transformer("turbo", TINY_TRANSFORMER, device="meta")
