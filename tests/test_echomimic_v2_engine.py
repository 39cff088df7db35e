from types import SimpleNamespace

import numpy as np
import pytest
from echomimic_v2_helpers import write_tiny_weights
from pose_helpers import wave_track

from pipelines.cache import DiskArrayCache
from pipelines.engines.base import RenderSettings, create_engine
from pipelines.engines.echomimic_v2.segments import SegmentPlan, blend, crossfade_weights
from pipelines.errors import WeightsMissingError
from pipelines.expression.track import ExpressionTrack
from pipelines.spec.engines import engine_settings
from pipelines.speech.track import Speech

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)

SIZE = 64


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_tiny_weights("echomimic-v2-acc", tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def persona(tmp_path_factory):
    import imageio.v3 as iio
    from skimage.data import astronaut

    folder = tmp_path_factory.mktemp("persona")
    iio.imwrite(folder / "astronaut.png", astronaut())
    wave_track(n=30, fps=24.0).save(folder / "poses.npz")
    return folder


def _engine(weights, **kw):
    return create_engine(
        "echomimic-v2-acc", weights_dir=weights, resolution=SIZE, segment_frames=12, segment_overlap=3, **kw
    )


def _settings(seed=5, **opts):
    return RenderSettings(
        fps=24, size=None, seed=seed, engine=engine_settings({"name": "echomimic-v2-acc", "steps": 2, **opts})
    )


def _speech(n):
    t = np.arange(int(16000 * n / 24)) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return Speech(samples, 16000, 24.0, n)


def _frames(engine, prepared, n, settings, start=0):
    out = list(engine.render(prepared, _speech(n), ExpressionTrack.neutral(n), settings, start=start))
    return np.stack([f.image for f in out])


def test_segments_cover_every_frame_and_resume_from_the_right_one():
    plan = SegmentPlan(30, 12, 3)
    assert len(plan) == 3 and [list(plan.frames(k))[::11] for k in range(3)] == [[0, 11], [9, 20], [18, 29]]
    assert SegmentPlan(10, 12, 3).frames(0) == range(10) and len(SegmentPlan(10, 12, 3)) == 1
    assert [plan.first_needed(s) for s in (0, 8, 9, 11, 12, 17, 18, 20, 21, 29)] == [
        0,
        0,
        0,
        0,
        1,
        1,
        1,
        1,
        2,
        2,
    ]
    w = crossfade_weights(3)
    assert np.allclose(w, [1 / 6, 0.5, 5 / 6])
    a, b = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 200, np.uint8)
    assert blend(a, b, 0.5).max() == 100


def test_missing_weights_name_the_command(tmp_path):
    with pytest.raises(WeightsMissingError, match="talkreel weights download echomimic-v2-acc"):
        create_engine("echomimic-v2-acc", weights_dir=tmp_path)


def test_renders_every_frame_deterministically_and_resumes_exactly(weights, persona, tmp_path):
    engine = _engine(weights)
    cache = DiskArrayCache(tmp_path / "cache")
    prepared = engine.prepare(SimpleNamespace(source=persona / "astronaut.png"), _settings(), cache)
    assert engine.frame_size(prepared) == (SIZE, SIZE) and prepared.body is not None
    n = 30
    full = _frames(engine, prepared, n, _settings())
    assert full.shape == (n, SIZE, SIZE, 3) and engine.stats["segments"] == 3
    assert np.array_equal(full, _frames(engine, prepared, n, _settings()))
    for start in (11, 21):  # inside the first cross-fade's segment, inside the second cross-fade
        resumed = _frames(engine, prepared, n, _settings(), start=start)
        assert np.array_equal(resumed, full[start:]), start
    # consecutive frames change smoothly across the segment joins (cross-fade), not by jumps
    steps = np.abs(np.diff(full.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert steps[8:11].max() <= 3 * np.median(steps) + 1


def test_recorded_poses_drive_the_hands_and_rest_poses_stand_in(weights, persona, tmp_path):
    engine = _engine(weights)
    cache = DiskArrayCache(tmp_path / "cache")
    plain = engine.prepare(SimpleNamespace(source=persona / "astronaut.png"), _settings(), cache)
    posed = engine.prepare(
        SimpleNamespace(source=persona / "astronaut.png", poses=persona / "poses.npz"), _settings(), cache
    )
    rest = engine.hand_track(plain, 100, 24.0, 5)
    moved = engine.hand_track(posed, 100, 24.0, 5)
    assert len(rest) == len(moved) == 100
    assert moved.points.min() >= -0.5 and not np.allclose(rest.points, moved.points)
    # the recorded track is fitted to the photo's shoulders: its anchor becomes the photo's
    assert np.allclose(moved.anchor, plain.body.anchor)
    a = _frames(engine, plain, 12, _settings())
    b = _frames(engine, posed, 12, _settings())
    assert not np.array_equal(a, b)


def test_memory_is_bounded_by_the_segment_not_the_clip(weights, persona, tmp_path):
    engine = _engine(weights)
    cache = DiskArrayCache(tmp_path / "cache")
    prepared = engine.prepare(SimpleNamespace(source=persona / "astronaut.png"), _settings(), cache)
    pipe = engine.pipeline()
    seen = []
    denoise = pipe.denoise

    def recording(latents, *args, **kwargs):  # the real denoise, noting how many frames it holds
        seen.append(latents.shape[2])
        return denoise(latents, *args, **kwargs)

    pipe.denoise = recording
    try:
        frames = _frames(engine, prepared, 57, _settings(steps=1))
    finally:
        del pipe.denoise
    assert len(frames) == 57 and max(seen) == 12 and len(seen) == 6


def test_the_30_step_engine_guides_with_cfg_from_ready_components(persona, tmp_path):
    from diffusers import AutoencoderKL
    from echomimic_v2_helpers import TINY_VAE, tiny_models
    from latentsync_helpers import TINY_WEIGHTS_AUDIO

    from pipelines.audio_features.encoder import EncoderDims, WhisperAudioEncoder

    components = {
        **tiny_models(),
        "vae": AutoencoderKL(**TINY_VAE).eval(),
        "audio_encoder": WhisperAudioEncoder(EncoderDims(**TINY_WEIGHTS_AUDIO)).eval(),
    }
    engine = create_engine(
        "echomimic-v2", components=components, resolution=SIZE, segment_frames=12, segment_overlap=3
    )
    settings = RenderSettings(
        fps=24, size=(72, 48), seed=1, engine=engine_settings({"name": "echomimic-v2", "steps": 1})
    )
    prepared = engine.prepare(
        SimpleNamespace(source=persona / "astronaut.png"), settings, DiskArrayCache(tmp_path)
    )
    assert engine.frame_size(prepared) == (72, 48)  # the job's size, on the VAE's grid of 8
    guided = _frames(engine, prepared, 12, settings)
    plain = _frames(
        engine,
        prepared,
        12,
        RenderSettings(
            fps=24,
            size=(72, 48),
            seed=1,
            engine=engine_settings({"name": "echomimic-v2", "steps": 1, "guidance": 1.0}),
        ),
    )
    assert guided.shape == (12, 48, 72, 3) and not np.array_equal(guided, plain)
