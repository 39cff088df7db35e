import csv

import pytest
import torch
from echomimic_v2_helpers import TINY_AUDIO_WIDTH, TINY_BASE, TINY_POSE, perturbed, tiny_models

from pipelines.engines.echomimic_v2 import checkpoints as ck
from pipelines.engines.echomimic_v2.denoiser import ReferenceSelfAttention, ScaledCrossAttention
from pipelines.engines.echomimic_v2.pose_encoder import PoseEncoder
from pipelines.engines.echomimic_v2.reference_net import transformer_blocks
from pipelines.engines.model.motion_norm import FrameGroupNorm

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)


@pytest.fixture(scope="module")
def models():
    return tiny_models()


def _inputs(b=1, f=3, h=8, seed=3):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, 4, f, h, h, generator=g),
        torch.randn(b, f, 6, TINY_AUDIO_WIDTH, generator=g),
        torch.randn(b, TINY_POSE["embedding_channels"], f, h, h, generator=g),
    )


def _tsv(shared_dir, name):
    path = shared_dir / "reference" / f"echomimic_v2_{name}_keys.tsv"
    if not path.exists():
        pytest.skip(f"{path.name} not present")
    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["key"]: tuple(int(x) for x in r["shape"].strip("[]").split(",")) for r in rows}


@pytest.mark.parametrize(
    ("part", "name"),
    [("denoiser", "denoising_unet"), ("reference_net", "reference_unet"), ("pose_encoder", "pose_encoder")],
)
def test_full_size_keys_and_shapes_equal_upstream(shared_dir, part, name):
    assert ck.expected_keys(part) == _tsv(shared_dir, name)


def test_reference_net_has_no_cross_attention_and_banks_every_block_input(models):
    ref = models["reference_net"]
    keys = ref.state_dict().keys()
    assert not any(".attn2." in k or ".norm2." in k and "transformer_blocks" in k for k in keys)
    assert not any(k.startswith(("conv_out", "conv_norm_out")) for k in keys)
    latents = torch.randn(1, 4, 8, 8)
    bank = ref.bank(latents)
    blocks = transformer_blocks(ref)
    assert set(bank) == {name for name, _ in blocks} and len(bank) == 10  # 3 down + mid + 6 up at 1 layer
    first = bank["down_blocks.0.attentions.0.transformer_blocks.0"]
    assert first.shape == (1, 64, 16)
    assert torch.equal(ref.bank(latents)[blocks[-1][0]], bank[blocks[-1][0]])
    assert not torch.equal(ref.bank(latents + 1)[blocks[-1][0]], bank[blocks[-1][0]])


def test_denoiser_processors_and_norms(models):
    den = models["denoiser"]
    procs = den.attn_processors
    spatial = [n for n in procs if ".attentions." in n]
    assert spatial and all(
        isinstance(procs[n], ReferenceSelfAttention if ".attn1." in n else ScaledCrossAttention)
        for n in spatial
    )
    assert all(
        isinstance(procs[n], ScaledCrossAttention) and procs[n].scale == 3.0
        for n in spatial
        if ".attn2." in n
    )
    assert hasattr(den.mid_block, "motion_modules")
    assert all(
        isinstance(m.norm, FrameGroupNorm)
        for m in den.modules()
        if type(m).__name__ == "AnimateDiffTransformer3D"
    )


@torch.no_grad()
def test_rows_without_the_bank_match_a_run_without_reference(models):
    den, ref = models["denoiser"], models["reference_net"]
    bank = ref.bank(torch.randn(1, 4, 8, 8))
    x, audio, pose = _inputs()
    x2, audio2, pose2 = (torch.cat([t, t]) for t in (x, audio, pose))
    mixed = den(
        x2, 500, audio2, pose=pose2, reference=bank, reference_rows=torch.tensor([False, True])
    ).sample
    plain = den(x, 500, audio, pose=pose).sample
    with_bank = den(x, 500, audio, pose=pose, reference=bank).sample
    torch.testing.assert_close(mixed[:1], plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1:], with_bank, atol=1e-5, rtol=0)
    assert (with_bank - plain).abs().max() > 1e-3


@torch.no_grad()
def test_audio_and_pose_change_the_prediction_and_zero_pose_is_no_pose(models):
    den = models["denoiser"]
    x, audio, pose = _inputs()
    base = den(x, 500, audio, pose=pose).sample
    assert (den(x, 500, audio * 0, pose=pose).sample - base).abs().max() > 1e-3
    assert (den(x, 500, audio, pose=pose * 2).sample - base).abs().max() > 1e-3
    torch.testing.assert_close(den(x, 500, audio, pose=pose * 0).sample, den(x, 500, audio).sample)


@torch.no_grad()
def test_audio_cross_attention_is_scaled_by_three(models):
    from diffusers.models.attention_processor import AttnProcessor2_0

    attn = models["denoiser"].down_blocks[0].attentions[0].transformer_blocks[0].attn2
    h = torch.randn(2, 5, attn.to_q.in_features)
    ctx = torch.randn(2, 4, TINY_AUDIO_WIDTH)
    torch.testing.assert_close(attn.processor(attn, h, ctx), 3.0 * AttnProcessor2_0()(attn, h, ctx))


def test_windows_longer_than_the_positional_table_are_refused(models):
    x, audio, _ = _inputs(f=33, h=8)
    with pytest.raises(ValueError, match="at most 32 frames"):
        models["denoiser"](x, 500, audio)


@torch.no_grad()
def test_pose_encoder_shapes_and_zero_initial_output():
    enc = PoseEncoder(**TINY_POSE)
    out = enc(torch.rand(2, 3, 64, 64))
    assert (
        out.shape == (2, 16, 8, 8) and float(out.abs().max()) == 0.0
    )  # conv_out starts at zero, as upstream
    names = list(enc.state_dict())
    assert (
        names[:2] == ["conv_in.weight", "conv_in.bias"]
        and len([n for n in names if n.startswith("blocks.")]) == 12
    )


@torch.no_grad()
def test_official_names_round_trip_through_strict_loading(models, tmp_path):
    den, ref = models["denoiser"], models["reference_net"]
    official = ck.official_state_dict(den)
    # 4 down blocks x 1 layer + mid + 4 up blocks x 2 layers = 13 motion modules, two sinusoid tables each
    assert sum(k.endswith("pos_encoder.pe") for k in official) == 2 * 13
    motion = {k: v for k, v in official.items() if ck.is_motion_key(k)}
    rest = {k: v for k, v in official.items() if not ck.is_motion_key(k)}
    loaded = ck.load_denoiser(rest, motion, TINY_BASE)
    x, audio, pose = _inputs()
    torch.testing.assert_close(loaded(x, 500, audio, pose=pose).sample, den(x, 500, audio, pose=pose).sample)
    # the sinusoid tables are a formula: a checkpoint without them loads the same model
    no_pe = {k: v for k, v in motion.items() if not k.endswith("pos_encoder.pe")}
    torch.testing.assert_close(
        ck.load_denoiser(rest, no_pe, TINY_BASE)(x, 500, audio).sample, den(x, 500, audio).sample
    )
    ref2 = ck.load_reference_net(ref.state_dict(), TINY_BASE)
    lat = torch.randn(1, 4, 8, 8)
    assert all(
        torch.equal(a, b) for a, b in zip(ref2.bank(lat).values(), ref.bank(lat).values(), strict=True)
    )
    enc = perturbed(PoseEncoder(**TINY_POSE))
    enc2 = ck.load_pose_encoder(enc.state_dict())
    assert enc2.config.block_out_channels == (4, 8, 8, 8)
    poses = torch.rand(1, 3, 64, 64)
    assert torch.equal(enc2(poses), enc(poses))


def test_strict_loading_names_what_is_wrong(models):
    official = ck.official_state_dict(models["denoiser"])
    motion = {k: v for k, v in official.items() if ck.is_motion_key(k)}
    rest = {k: v for k, v in official.items() if not ck.is_motion_key(k)}
    with pytest.raises(ck.CheckpointMismatchError, match="missing keys.*proj_out"):
        ck.load_denoiser(rest, {k: v for k, v in motion.items() if "proj_out" not in k}, TINY_BASE)
    bad = dict(rest, **{"conv_in.weight": torch.zeros(16, 5, 3, 3)})
    with pytest.raises(ck.CheckpointMismatchError, match="conv_in.weight"):
        ck.load_denoiser(bad, motion, TINY_BASE)
    pe = next(k for k in motion if k.endswith("attention_blocks.1.pos_encoder.pe"))
    with pytest.raises(ck.CheckpointMismatchError, match="same sinusoid"):
        ck.load_denoiser(rest, dict(motion, **{pe: motion[pe] + 1}), TINY_BASE)
    with pytest.raises(ck.CheckpointMismatchError, match="unexpected"):
        ck.load_reference_net(dict(models["reference_net"].state_dict(), extra=torch.zeros(1)), TINY_BASE)


def test_denoising_unet_wins_over_motion_module_as_upstream():
    a, b = torch.zeros(1), torch.ones(1)
    assert ck.merge_denoiser({"k": b}, {"k": a, "m": a}) == {"k": b, "m": a}


def test_pickled_checkpoints_are_read_with_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    path = tmp_path / "pose_encoder.pth"
    torch.save({"conv_in.weight": torch.zeros(1), "x": Evil()}, path)
    from pipelines.errors import InputError

    with pytest.raises(InputError, match="never unpickles"):
        ck.read_state_dict(path)


# lambdalabs/sd-image-variations-diffusers unet/config.json: what `talkreel weights download` fetches as the base
SD_IMAGE_VARIATIONS_UNET = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.9.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": False,
}


def test_models_built_from_the_downloaded_base_config_have_upstreams_keys(shared_dir):
    from pipelines.engines.echomimic_v2.denoiser import build_denoiser
    from pipelines.engines.echomimic_v2.reference_net import build_reference_net

    den = build_denoiser(ck.denoiser_config(SD_IMAGE_VARIATIONS_UNET), device="meta")
    ref = build_reference_net(ck.reference_config(SD_IMAGE_VARIATIONS_UNET), device="meta")
    assert {k: tuple(v.shape) for k, v in ck.official_state_dict(den).items()} == _tsv(
        shared_dir, "denoising_unet"
    )
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == _tsv(shared_dir, "reference_unet")
