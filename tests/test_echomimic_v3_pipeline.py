import math

import numpy as np
import pytest
import torch
from echomimic_v3_helpers import (
    TINY_TRANSFORMER,
    tiny_image_encoder,
    tiny_text_encoder,
    tiny_tokenizer,
    tiny_transformer,
    tiny_vae,
)

from pipelines.engines.echomimic_v3.conditioning import (
    PromptCache,
    clip_image_tokens,
    encode_prompts,
    encode_video,
    face_mask,
    inpaint_condition,
    pad_prompt_embeds,
    sample_size,
)
from pipelines.engines.echomimic_v3.pipeline import EchoMimicV3Pipeline, dynamic_scale
from pipelines.engines.echomimic_v3.schedulers import flash_scheduler, preview_scheduler

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)

H, W = 32, 48  # 4x6 latents, 2x3 tokens per latent frame


def _reference(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, H, W, generator=g) * 2 - 1


def _pipeline(variant):
    scheduler = preview_scheduler() if variant == "preview" else flash_scheduler()
    return EchoMimicV3Pipeline(tiny_transformer(variant), tiny_vae(), scheduler, tiny_image_encoder())


def _audio(variant, frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    if variant == "preview":
        return torch.randn(1, 2 * frames + 3, TINY_TRANSFORMER["audio_dim"], generator=g)
    return torch.randn(
        1, frames, 5, TINY_TRANSFORMER["audio_layers"], TINY_TRANSFORMER["audio_dim"], generator=g
    )


def _text(seed, n=5):
    g = torch.Generator().manual_seed(seed)
    return pad_prompt_embeds([torch.randn(n, TINY_TRANSFORMER["text_dim"], generator=g)])


@pytest.mark.parametrize("variant", ["preview", "flash"])
def test_pipeline_renders_frames_deterministically_for_a_seed(variant):
    pipe = _pipeline(variant)
    kw = dict(
        image=_reference(),
        audio_embeds=_audio(variant, 5),
        prompt_embeds=_text(1),
        negative_prompt_embeds=_text(2),
        num_frames=5,
        num_inference_steps=3,
        face_mask=torch.ones(6),
    )
    a = pipe(**kw, generator=torch.Generator().manual_seed(7)).frames
    b = pipe(**kw, generator=torch.Generator().manual_seed(7)).frames
    c = pipe(**kw, generator=torch.Generator().manual_seed(8)).frames
    assert a.shape == (1, 5, H, W, 3)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_preview_audio_matters_and_the_face_mask_gates_it():
    pipe = _pipeline("preview")
    kw = dict(
        image=_reference(),
        prompt_embeds=_text(1),
        negative_prompt_embeds=_text(2),
        num_frames=5,
        num_inference_steps=2,
    )

    def run(audio, mask):
        return pipe(
            **kw, audio_embeds=audio, face_mask=mask, generator=torch.Generator().manual_seed(0)
        ).frames

    a1, a2 = _audio("preview", 5, 1), _audio("preview", 5, 2)
    assert not torch.allclose(run(a1, torch.ones(6)), run(a2, torch.ones(6)))
    assert torch.allclose(run(a1, torch.zeros(6)), run(a2, torch.zeros(6)))


def test_pipeline_refuses_bad_frame_counts_and_short_audio():
    pipe = _pipeline("flash")
    with pytest.raises(ValueError, match="4k\\+1"):
        pipe(_reference(), _audio("flash", 6), _text(1), num_frames=6)
    with pytest.raises(ValueError, match="one audio window per frame"):
        pipe(_reference(), _audio("flash", 9), _text(1), num_frames=5)
    pipe = _pipeline("preview")
    with pytest.raises(ValueError, match="audio feature vectors"):
        pipe(_reference(), _audio("preview", 1), _text(1), _text(2), num_frames=5)


def test_dynamic_guidance_falls_from_the_scale_to_about_half():
    assert dynamic_scale(4.0, 0, 25) == pytest.approx(4.0)
    assert dynamic_scale(4.0, 24, 25) == pytest.approx(2.0, abs=1e-4)
    values = [dynamic_scale(2.9, i, 25) for i in range(25)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    mid = 0.5**5
    assert dynamic_scale(4.0, 12, 24) == pytest.approx(2 + 2 * (1 - math.cos(math.pi * mid)) / 2)


def test_inpaint_condition_marks_the_first_latent_frame_known_and_holds_the_reference():
    vae = tiny_vae()
    ref = _reference()
    cond = inpaint_condition(vae, ref, 9)
    assert cond.shape == (1, 4 + 4, 3, H // 8, W // 8)
    assert torch.all(cond[:, :4, 0] == 1) and torch.all(cond[:, :4, 1:] == 0)
    # causal VAE: the first latent frame is the reference alone, normalised with the VAE's mean/std
    alone = encode_video(vae, ref[:, :, None])
    assert torch.allclose(cond[:, 4:, :1], alone, atol=1e-5)
    raw = vae.encode(ref[:, :, None]).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    assert torch.allclose(alone, (raw - mean) / std, atol=1e-6)
    # a one-frame clip still gets 4 mask channels (the first frame stands for a whole latent frame)
    assert inpaint_condition(vae, ref, 1).shape == (1, 8, 1, H // 8, W // 8)


def test_clip_tokens_come_from_the_whole_squashed_image_not_a_centre_crop():
    encoder = tiny_image_encoder()
    wide = torch.rand(1, 3, 40, 120, generator=torch.Generator().manual_seed(0)) * 2 - 1
    tokens = clip_image_tokens(encoder, wide)
    assert tokens.shape == (1, 257, TINY_TRANSFORMER["image_dim"])
    edited = wide.clone()
    edited[..., :20] = -1.0  # the left sixth, which a centre crop to a square would drop
    assert not torch.allclose(tokens, clip_image_tokens(encoder, edited))


def test_prompt_embeddings_are_cut_to_the_prompt_and_zero_padded():
    tokenizer, encoder = tiny_tokenizer(), tiny_text_encoder()
    embeds = encode_prompts(tokenizer, encoder, ["a person is speaking", "calm"])
    assert [e.shape[0] for e in embeds] == [5, 2]  # words + </s>
    padded = pad_prompt_embeds(embeds)
    assert padded.shape == (2, 512, TINY_TRANSFORMER["text_dim"])
    assert torch.equal(padded[0, :5], embeds[0]) and torch.all(padded[0, 5:] == 0)
    # the attention mask keeps padding out: a prompt encodes the same alone as next to a longer one
    assert torch.allclose(encode_prompts(tokenizer, encoder, ["calm"])[0], embeds[1], atol=1e-6)


def test_prompt_cache_encodes_each_prompt_once_per_revision(tmp_path):
    loads = []

    def load():
        loads.append(1)
        return tiny_tokenizer(), tiny_text_encoder()

    cache = PromptCache(tmp_path, "rev-a")
    first = cache.embeddings(["a person is speaking", "calm", "calm"], load)
    again = cache.embeddings(["calm", "a person is speaking"], load)
    assert len(loads) == 1
    assert torch.equal(first[1], again[0]) and torch.equal(first[0], again[1])
    PromptCache(tmp_path, "rev-b").embeddings(["calm"], load)
    assert len(loads) == 2


def test_output_size_keeps_aspect_within_768_squared_in_multiples_of_16():
    assert sample_size(512, 512) == (512, 512)
    h, w = sample_size(1920, 1080)
    assert (h, w) == (576, 1024) and h * w <= 768 * 768
    assert sample_size(700, 500) == (496, 688)


def test_face_mask_marks_the_cells_of_the_face_box():
    # a 640x320 reference rendered at 320x160: the box (160, 80)-(320, 240) becomes cells x 5..10, y 2..7
    mask = face_mask((160, 80, 320, 240), (640, 320), (160, 320)).reshape(10, 20)
    assert mask.sum() == 5 * 5
    ys, xs = np.nonzero(mask.numpy())
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (2, 6, 5, 9)
