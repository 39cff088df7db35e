from types import SimpleNamespace

import numpy as np
import pytest
from echomimic_v3_helpers import write_tiny_weights
from latentsync_helpers import one_torch_thread
from PIL import Image
from project_helpers import portrait

from pipelines.cache import DiskArrayCache
from pipelines.engines.base import RenderSettings, create_engine
from pipelines.engines.echomimic_v3.conditioning import PromptCache
from pipelines.engines.echomimic_v3.engine import EMOTION_WORDS, PREVIEW_NEGATIVE
from pipelines.engines.model.emotion import dominant_emotions
from pipelines.errors import RenderError
from pipelines.expression.build import emotion_table
from pipelines.expression.track import PARAMS, ExpressionTrack
from pipelines.spec.engines import engine_settings
from pipelines.speech.track import Speech

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)

N = 30  # three 13-frame chunks overlapping by 4


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    with one_torch_thread():
        return write_tiny_weights("echomimic-v3-preview", tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def setup(weights, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("persona")
    path = tmp / "portrait.png"
    Image.fromarray(portrait(96)).save(path)
    engine = create_engine(
        "echomimic-v3-preview", weights_dir=weights, device="cpu", prompt_cache_dir=tmp / "prompts"
    )
    settings = _settings()
    persona = SimpleNamespace(source=path, looks={}, emotions={})
    with one_torch_thread():
        prepared = engine.prepare(persona, settings, DiskArrayCache(tmp / "cache"))
    return engine, prepared, tmp


def _settings(seed=5, fps=25, **opts):
    cfg = {"name": "echomimic-v3-preview", "steps": 2, "chunk_frames": 13, "overlap": 4, **opts}
    return RenderSettings(fps=fps, size=(64, 64), seed=seed, engine=engine_settings(cfg))


def _speech(n):
    t = np.arange(int(16000 * n / 25)) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return Speech(samples, 16000, 25.0, n)


def _render(engine, prepared, settings, start=0, expression=None, n=N):
    expression = expression or ExpressionTrack.neutral(n)
    return [f.image for f in engine.render(prepared, _speech(n), expression, settings, start=start)]


@pytest.fixture(scope="module")
def full(setup):
    engine, prepared, _ = setup
    with one_torch_thread():
        frames = _render(engine, prepared, _settings())
    return frames, dict(engine.stats)


def test_full_render_frames_and_chunks(setup, full):
    engine, prepared, _ = setup
    frames, stats = full
    assert engine.frame_size(prepared) == (64, 64)
    assert len(frames) == N and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    assert stats["chunks"] == 3
    other = _render(engine, prepared, _settings(seed=6))
    assert not all(np.array_equal(a, b) for a, b in zip(frames, other, strict=True))


@pytest.mark.parametrize(
    "start", [11, 20]
)  # 11: inside the cross-fade into chunk 1; 20: inside chunk 2's fade
def test_resume_gives_the_frames_of_an_uninterrupted_render(setup, full, start):
    engine, prepared, _ = setup
    resumed = _render(engine, prepared, _settings(), start=start)
    assert len(resumed) == N - start
    assert all(np.array_equal(a, b) for a, b in zip(full[0][start:], resumed, strict=True))
    assert engine.stats["chunks"] == (3 if start == 11 else 2)  # the chunk before, for the cross-fade


def test_other_frame_rates_are_refused(setup):
    engine, prepared, _ = setup
    with pytest.raises(RenderError, match="25 fps"):
        _render(engine, prepared, _settings(fps=30))


def test_emotion_track_becomes_prompt_words(setup):
    engine, _, _ = setup
    table = emotion_table({})
    rows = np.zeros((10, len(PARAMS)), np.float32)
    rows[:7] = table["happy"]
    rows[7:] = table["sad"]
    assert dominant_emotions(rows, table) == ["happy"] * 7 + ["sad"] * 3
    assert dominant_emotions(rows * 0.2, table) == [""] * 10  # too faint to count
    opts = engine_settings({"name": "echomimic-v3-preview", "prompt": "A host talks."})
    assert engine.prompts_for(opts, "happy") == "A host talks. " + EMOTION_WORDS["happy"]
    assert engine.prompts_for(opts, "") == "A host talks."
    own = engine_settings({"name": "echomimic-v3-preview", "emotion_prompts": {"happy": "Beaming."}})
    assert engine.prompts_for(own, "happy").endswith("Beaming.")


def _happy_sad_happy():
    table = emotion_table({})
    rows = np.repeat(table["happy"][None], N, axis=0)
    rows[7:22] = table["sad"]
    return ExpressionTrack(rows)


@pytest.fixture(scope="module")
def emotional(setup):
    engine, prepared, _ = setup
    with one_torch_thread():
        frames = _render(engine, prepared, _settings(), expression=_happy_sad_happy())
    return frames, dict(engine.stats)


def test_chunks_start_at_emotion_changes_with_one_prompt_each(emotional):
    """13-frame chunks sharing 4: the grid would start at 0, 9, 18, 27; the changes at 7 and 22 move it."""
    _, stats = emotional
    assert stats["chunk_starts"] == [0, 7, 16, 22]
    opts = _settings().engine
    happy, sad = (opts.prompt + " " + EMOTION_WORDS[e] for e in ("happy", "sad"))
    assert stats["chunk_prompts"] == [happy, sad, sad, happy]


@pytest.mark.parametrize("start", [7, 9, 16, 22])  # every chunk start, and frames in cross-fades
def test_resume_at_emotion_chunk_boundaries_gives_the_same_frames(setup, emotional, start):
    engine, prepared, _ = setup
    resumed = _render(engine, prepared, _settings(), start=start, expression=_happy_sad_happy())
    assert len(resumed) == N - start
    assert all(np.array_equal(a, b) for a, b in zip(emotional[0][start:], resumed, strict=True))


def test_low_vram_offloads_and_gives_the_same_frames(setup):
    """low_vram puts diffusers' group-offloading hooks on the models (onload device: this machine's CPU) and VAE
    tiling (no tile at 64 px): the frames are the plain mode's; switching back removes the hooks."""
    from pipelines.engines.model.offload import offloaded

    engine, prepared, _ = setup
    plain = _render(engine, prepared, _settings(), n=9)
    low = _render(engine, prepared, _settings(low_vram=True), n=9)
    pipe = engine.pipeline("auto", low_vram=True)  # as the render left it
    assert pipe.vae.use_tiling
    assert offloaded(pipe.transformer) and offloaded(pipe.vae) and offloaded(pipe.image_encoder)
    assert all(np.array_equal(a, b) for a, b in zip(plain, low, strict=True))
    again = _render(engine, prepared, _settings(), n=9)
    assert not offloaded(pipe.transformer) and not pipe.vae.use_tiling
    assert all(np.array_equal(a, b) for a, b in zip(plain, again, strict=True))


def test_each_distinct_prompt_is_encoded_once(setup):
    engine, prepared, tmp = setup
    table = emotion_table({})
    expression = ExpressionTrack(np.repeat(table["surprised"][None], 9, axis=0))  # one chunk
    cache = PromptCache(tmp / "prompts", engine._text_revision())
    surprised = engine.prompts_for(_settings().engine, "surprised")
    assert cache.get(surprised) is None
    _render(engine, prepared, _settings(), expression=expression, n=9)
    assert cache.get(surprised) is not None and cache.get(PREVIEW_NEGATIVE) is not None
    files = set((tmp / "prompts").glob("*.safetensors"))
    _render(engine, prepared, _settings(), expression=expression, n=9)
    assert set((tmp / "prompts").glob("*.safetensors")) == files


def test_chunk_frames_must_be_4k_plus_1():
    with pytest.raises(Exception, match="4k\\+1"):
        engine_settings({"name": "echomimic-v3-flash", "chunk_frames": 12})
    with pytest.raises(Exception, match="shorter than chunk_frames"):
        engine_settings({"name": "echomimic-v3-flash", "chunk_frames": 9, "overlap": 9})


def test_bfloat16_placement_keeps_wans_float32_modules():
    import torch
    from echomimic_v3_helpers import tiny_transformer

    from pipelines.engines.echomimic_v3.engine import _place

    model = tiny_transformer("flash")
    _place(model, torch.device("cpu"), torch.bfloat16)
    assert model.patch_embedding.weight.dtype == torch.bfloat16
    assert model.blocks[0].attn2.k_audio.weight.dtype == torch.bfloat16
    assert model.blocks[0].norm2.weight.dtype == torch.float32
    assert model.blocks[0].scale_shift_table.dtype == torch.float32
    assert model.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32
