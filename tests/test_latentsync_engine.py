from types import SimpleNamespace

import numpy as np
import pytest
from latentsync_helpers import write_tiny_weights

from pipelines.cache import DiskArrayCache
from pipelines.engines.base import RenderSettings, create_engine, loop_frame
from pipelines.engines.latentsync.engine import LatentSyncPrepared, color_match, color_ring
from pipelines.errors import WeightsMissingError
from pipelines.expression.track import PARAMS, ExpressionTrack
from pipelines.face.align import latentsync_template
from pipelines.face.blend import feathered_mask
from pipelines.spec.engines import engine_settings
from pipelines.speech.track import Speech
from tests.face_helpers import write_video

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)

RES = 64  # face crops; the official sizes (256/512) are far too slow for a CPU test


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_tiny_weights("latentsync-1.6", tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def portrait(tmp_path_factory):
    import imageio.v3 as iio
    from skimage.data import astronaut

    path = tmp_path_factory.mktemp("persona") / "astronaut.png"
    iio.imwrite(path, astronaut()[:384, 64:448])
    return path


def _engine(weights, **kw):
    return create_engine("latentsync-1.6", weights_dir=weights, resolution=RES, **kw)


def _settings(seed=5, **opts):
    return RenderSettings(
        fps=25, size=None, seed=seed, engine=engine_settings({"name": "latentsync-1.6", "steps": 2, **opts})
    )


def _speech(n):
    t = np.arange(int(16000 * n / 25)) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return Speech(samples, 16000, 25.0, n)


def _render(engine, prepared, n, settings, expression=None, start=0):
    expression = expression or ExpressionTrack.neutral(n)
    return list(engine.render(prepared, _speech(n), expression, settings, start=start))


def test_missing_weights_name_the_command(tmp_path):
    with pytest.raises(WeightsMissingError, match="talkreel weights download latentsync-1.6"):
        create_engine("latentsync-1.6", weights_dir=tmp_path)


def test_still_persona_streams_exact_frames_deterministically(weights, portrait, tmp_path):
    engine = _engine(weights)
    settings = _settings()
    persona = SimpleNamespace(source=portrait, looks={}, emotions={})
    prepared = engine.prepare(persona, settings, DiskArrayCache(tmp_path))
    n = 19  # one full chunk and a partial one: the tail is rendered too
    frames = _render(engine, prepared, n, settings)
    import imageio.v3 as iio

    source = iio.imread(portrait)
    assert len(frames) == n and all(f.face_found for f in frames)
    assert all(f.image.shape == source.shape and f.image.dtype == np.uint8 for f in frames)
    # outside the pasted region every pixel is the source's
    clip = prepared.clips[""]
    _, _, (x0, y0, x1, y1) = feathered_mask(
        clip.matrices[0], latentsync_template(RES).crop_size, source.shape[:2]
    )
    outside = np.ones(source.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    for f in frames:
        assert np.array_equal(f.image[outside], source[outside])
        assert not np.array_equal(f.image[y0:y1, x0:x1], source[y0:y1, x0:x1])
    # same seed: same frames; resuming mid-chunk gives the frames of the full render
    again = _render(engine, prepared, n, settings)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again, strict=True))
    tail = _render(engine, prepared, n, settings, start=17)
    assert len(tail) == 2 and all(
        np.array_equal(a.image, b.image) for a, b in zip(frames[17:], tail, strict=True)
    )
    other = _render(engine, prepared, 3, _settings(seed=6))
    assert not np.array_equal(other[0].image, frames[0].image)


def test_video_pingpong_and_faceless_frames_pass_through(weights, portrait, tmp_path):
    import imageio.v3 as iio

    from pipelines.media.video_in import open_source

    face = iio.imread(portrait)
    frames = [np.roll(face, 2 * i, axis=1) for i in range(6)] + [np.full_like(face, 90)] * 4
    video = tmp_path / "clip.mp4"
    write_video(video, frames, lossless=True)
    engine = _engine(weights)
    settings = _settings()
    prepared = engine.prepare(
        SimpleNamespace(source=video, looks={}, emotions={}), settings, DiskArrayCache(tmp_path)
    )
    clip = prepared.clips[""]
    assert clip.n == 10 and clip.found.tolist() == [True] * 6 + [False] * 4
    n = 24  # longer than the clip: forwards, backwards, forwards
    out = _render(engine, prepared, n, settings)
    decoded = list(open_source(video, 25).frames())
    for i, f in enumerate(out):
        s = loop_frame(i, 10, "pingpong", ends_twice=True)
        assert f.face_found == clip.found[s]
        if not clip.found[s]:
            assert np.array_equal(f.image, decoded[s])  # passes through untouched
    # cross-fade: the face next to the gap is blended with a weight below 1, away from it at full weight
    assert 0 < clip.weights[5] < 1 and clip.weights[0] == 1


def test_emotion_preconditions_the_upper_face(weights, portrait, tmp_path):
    engine = _engine(weights)
    settings = _settings()
    prepared = engine.prepare(
        SimpleNamespace(source=portrait, looks={}, emotions={}), settings, DiskArrayCache(tmp_path)
    )
    values = np.zeros((3, len(PARAMS)), np.float32)
    values[:, PARAMS.index("brow_raise")] = 1.0
    raised = _render(engine, prepared, 3, settings, ExpressionTrack(values))
    plain = _render(engine, prepared, 3, settings)
    pts = prepared.clips[""].points[0]
    from pipelines.face import mesh

    brow = pts[list(mesh.LEFT_BROW)].astype(int)
    y0, y1 = brow[:, 1].min() - 10, brow[:, 1].max() + 5
    x0, x1 = brow[:, 0].min(), brow[:, 0].max()
    assert np.abs(raised[0].image[y0:y1, x0:x1].astype(int) - plain[0].image[y0:y1, x0:x1]).mean() > 1.0
    assert np.array_equal(raised[0].image[:20], plain[0].image[:20])  # far from the face: the same


def test_look_clip_follows_the_dominant_emotion(weights, portrait, tmp_path):
    import imageio.v3 as iio

    look = tmp_path / "happy.png"
    iio.imwrite(look, np.ascontiguousarray(iio.imread(portrait)[:, ::-1]))
    engine = _engine(weights)
    settings = _settings()
    persona = SimpleNamespace(source=portrait, looks={"happy": look}, emotions={})
    prepared = engine.prepare(persona, settings, DiskArrayCache(tmp_path))
    assert isinstance(prepared, LatentSyncPrepared) and set(prepared.clips) == {"", "happy"}
    values = np.zeros((4, len(PARAMS)), np.float32)
    values[2:, PARAMS.index("smile")] = 0.9
    values[2:, PARAMS.index("eye_open")] = -0.2
    values[:, PARAMS.index("blink")] = [0, 1, 0, 1]  # idle life never picks a look
    assert engine.look_for_frames(prepared, values) == ["", "", "happy", "happy"]
    out = _render(engine, prepared, 4, settings, ExpressionTrack(values))
    assert np.array_equal(out[0].image[:20], iio.imread(portrait)[:20])
    assert np.array_equal(out[3].image[:20], iio.imread(look)[:20])


def test_color_match_moves_only_the_regenerated_region():
    import torch

    keep = np.ones((64, 64), np.float32)
    keep[30:60, 10:54] = 0
    ring = color_ring(keep)
    assert ring[30, 30] and ring[59, 30] and not ring[45, 30] and not ring[20, 30]
    rng = np.random.default_rng(0)
    source = torch.from_numpy(rng.integers(60, 200, size=(2, 3, 64, 64)).astype(np.float32))
    generated = source.clone()
    generated[:, :, 30:60, 10:54] += 25  # a colour cast in the regenerated region
    fixed = color_match(generated, source, torch.from_numpy(keep), torch.from_numpy(np.flatnonzero(ring)))
    assert torch.equal(fixed[:, :, keep == 1], source[:, :, keep == 1])
    assert (fixed - source).abs().max() <= 1


def test_reader_decodes_forwards_and_restarts_only_for_earlier_frames(tmp_path, monkeypatch):
    from pipelines.engines.model.source_frames import FrameReader

    frames = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(8)]
    video = tmp_path / "ramp.mp4"
    write_video(video, frames, lossless=True)
    reader = FrameReader(video, 25)
    starts = []
    original = reader.src.frames
    monkeypatch.setattr(
        reader.src, "frames", lambda start=0, count=None: starts.append(start) or original(start, count)
    )
    assert [int(f[0, 0, 0]) for f in reader.get([0, 1, 2]).values()] == [0, 10, 20]
    assert sorted(reader.get([5, 3, 4])) == [3, 4, 5]
    assert int(reader.get([7, 6])[7][0, 0, 0]) == 70
    assert starts == [0]  # forwards only: one decode pass
    reader.get([6, 5])  # ping-pong turning back
    assert starts == [0, 5]


@pytest.fixture(scope="module")
def moving_video(tmp_path_factory, portrait):
    """A 10-frame persona video: the face sliding for 6 frames, then 4 frames without a face."""
    import imageio.v3 as iio

    face = iio.imread(portrait)
    frames = [np.roll(face, 2 * i, axis=1) for i in range(6)] + [np.full_like(face, 90)] * 4
    video = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(video, frames, lossless=True)
    return video


def _prepared(engine, source, tmp_path, settings):
    persona = SimpleNamespace(source=source, looks={}, emotions={})
    return engine.prepare(persona, settings, DiskArrayCache(tmp_path))


def _same(a, b):
    return len(a) == len(b) and all(
        np.array_equal(x.image, y.image) and x.face_found == y.face_found for x, y in zip(a, b, strict=True)
    )


def test_prefetch_and_the_latent_cache_leave_the_frames_bit_identical(weights, moving_video, tmp_path):
    values = np.zeros((40, len(PARAMS)), np.float32)
    values[20:, PARAMS.index("brow_raise")] = 0.8  # the second half's crops differ from the source frames'
    expression = ExpressionTrack(values)
    settings = _settings()
    base = _engine(weights, prefetch=False, latent_cache_size=0)
    prepared = _prepared(base, moving_video, tmp_path, settings)
    reference = _render(base, prepared, 40, settings, expression)
    assert base.stats["reference_latents"]["encoded"] > 0
    fast = _engine(weights, prefetch=True)
    assert _same(_render(fast, prepared, 40, settings, expression), reference)
    # a resumed render starts with the cache in another state (warm here, cold after a crash): same frames
    assert _same(_render(fast, prepared, 40, settings, expression, start=21), reference[21:])
    cold = _engine(weights, prefetch=True)
    assert _same(_render(cold, prepared, 40, settings, expression, start=33), reference[33:])


def test_repeated_crops_are_encoded_once(weights, portrait, moving_video, tmp_path):
    settings = _settings()
    engine = _engine(weights)
    still = _prepared(engine, portrait, tmp_path, settings)
    _render(engine, still, 40, settings)  # three chunks of one looped photo
    assert engine.stats["reference_latents"] == {"encoded": 1, "reused": 39, "held": 1}
    assert engine.describe()["reference_latents"]["reused"] == 39
    _render(engine, still, 20, settings)  # the next job with this persona: nothing to encode
    assert engine.stats["reference_latents"]["encoded"] == 0
    # a 10-frame video looped forwards and backwards: each distinct source frame is encoded once (the six face
    # frames differ; the four flat frames without a face may share crops)
    video = _prepared(engine, moving_video, tmp_path, settings)
    _render(engine, video, 40, settings)
    counts = engine.stats["reference_latents"]
    assert 6 <= counts["encoded"] <= 10 and counts["reused"] == 40 - counts["encoded"]
    small = _engine(weights, latent_cache_size=0)  # without a cache: repeats inside a chunk only
    _render(small, video, 40, settings)
    assert small.stats["reference_latents"]["encoded"] > counts["encoded"]


def test_low_vram_gives_the_same_frames_and_keeps_one_model_on_the_device(weights, portrait, tmp_path):
    settings = _settings(guidance=2.0)
    plain = _engine(weights)
    prepared = _prepared(plain, portrait, tmp_path, settings)
    reference = _render(plain, prepared, 20, settings)
    assert not plain.describe()["offload_idle_modules"]
    low = _engine(weights, latent_cache_size=0)
    low_settings = _settings(guidance=2.0, low_vram=True, vae_tiling=True)
    frames = _render(low, prepared, 20, low_settings)
    pipe = low._pipe
    assert pipe.vae.use_slicing and pipe.vae.use_tiling and low.describe()["offload_idle_modules"]
    # batch 1 instead of 2 (guidance halves, VAE slices) changes float rounding only: a level here and there
    diff = np.stack([np.abs(a.image.astype(int) - b.image) for a, b in zip(frames, reference, strict=True)])
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
    # the residency log: UNet and VAE take turns (never both on the device), the audio encoder visits and leaves
    on: set[str] = set()
    for name, where in pipe.module_moves:
        if where == "off":
            on.discard(name)
        else:
            on.add(name)
            assert not {"unet", "vae"} <= on
    assert on <= {"unet", "vae"} and "audio_encoder" not in on
    names = [m for m, where in pipe.module_moves if where == "on"]
    # chunk 0: encode, denoise, decode; chunk 1: the VAE is still there for the encode, then denoise, decode
    assert [m for m in names if m != "audio_encoder"] == ["vae", "unet", "vae", "unet", "vae"]
    assert names.count("audio_encoder") >= 3  # the features' set-up and each chunk's windows


def test_compile_option_is_accepted_and_recorded(weights):
    settings = _settings(compile=True)
    assert settings.engine.compile and not _settings().engine.compile
    engine = _engine(weights)
    pipe = engine.configure(settings.engine)
    assert pipe.unet_compiled and engine.describe()["unet_compiled"]
    engine.configure(_settings().engine)
    assert not pipe.unet_compiled and not engine.describe()["unet_compiled"]


@pytest.mark.slow
def test_compiled_unet_renders_the_same_frames(weights, portrait, tmp_path):
    """Through dynamo with the eager backend (inductor's C++ build takes minutes on a CPU): the graph capture,
    including the deep-feature hook, gives the frames of the plain UNet."""
    settings = _settings(deep_cache=True, steps=4)
    plain = _engine(weights)
    prepared = _prepared(plain, portrait, tmp_path, settings)
    reference = _render(plain, prepared, 18, settings)
    compiled = _engine(weights, compile_options={"backend": "eager", "dynamic": False})
    frames = _render(compiled, prepared, 18, _settings(deep_cache=True, steps=4, compile=True))
    assert compiled.describe()["unet_compiled"]
    assert _same(frames, reference)


def test_color_match_option_changes_only_the_face_region(weights, portrait, tmp_path):
    settings = _settings()
    engine = _engine(weights)
    prepared = _prepared(engine, portrait, tmp_path, settings)
    plain = _render(engine, prepared, 3, settings)
    matched = _render(engine, prepared, 3, _settings(color_match=True))
    clip = prepared.clips[""]
    _, _, (x0, y0, x1, y1) = feathered_mask(clip.matrices[0], latentsync_template(RES).crop_size, (384, 384))
    for a, b in zip(plain, matched, strict=True):
        assert not np.array_equal(a.image[y0:y1, x0:x1], b.image[y0:y1, x0:x1])
        a.image[y0:y1, x0:x1] = b.image[y0:y1, x0:x1]
        assert np.array_equal(a.image, b.image)


def _speech_at(n, fps, gain=1.0, decoded=False):
    t = np.arange(int(round(16000 * n / fps))) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return Speech(x * np.float32(gain), 16000, float(fps), n, decoded=x if decoded else None)


def test_the_audio_features_come_from_the_speech_as_decoded_not_the_normalised_copy(
    weights, portrait, tmp_path
):
    settings = _settings()
    engine = _engine(weights)
    prepared = _prepared(engine, portrait, tmp_path, settings)
    neutral = ExpressionTrack.neutral(8)

    def frames(speech):
        return list(engine.render(prepared, speech, neutral, settings))

    decoded = frames(_speech_at(8, 25))
    # the loudness-normalised samples are 4x louder; the features must follow the decoded samples alone
    assert _same(frames(_speech_at(8, 25, gain=4.0, decoded=True)), decoded)
    assert not _same(frames(_speech_at(8, 25, gain=4.0)), decoded)  # (the features do reach the frames)


def test_same_seed_same_frames_across_a_resume_at_every_chunk_boundary(weights, moving_video, tmp_path):
    settings = _settings(seed=11)
    full_engine = _engine(weights, chunk_frames=4, prefetch=False)
    prepared = _prepared(full_engine, moving_video, tmp_path, settings)
    full = _render(full_engine, prepared, 16, settings)
    for k in (4, 8, 12):  # a killed render resumes at a chunk checkpoint with a fresh engine (cold caches)
        resumed = _render(_engine(weights, chunk_frames=4), prepared, 16, settings, start=k)
        assert _same(resumed, full[k:]), k
    other = _render(full_engine, prepared, 16, _settings(seed=12))
    assert not _same(other, full)  # the seed is what the frames depend on


def test_other_frame_rates_render_at_25_fps_and_show_the_nearest_frame(weights, moving_video, tmp_path):
    engine = _engine(weights, prefetch=False)
    prepared = _prepared(engine, moving_video, tmp_path, _settings())

    def frames(n, fps, start=0):
        settings = RenderSettings(fps=fps, size=None, seed=5, engine=_settings().engine)
        return list(
            engine.render(prepared, _speech_at(n, fps), ExpressionTrack.neutral(n), settings, start=start)
        )

    at25 = frames(12, 25)
    at50 = frames(24, 50)  # each 25 fps frame shown twice
    assert len(at50) == 24 and all(_same([at50[i]], [at25[i // 2]]) for i in range(24))
    at12 = frames(6, 12.5)  # every other one: the frame at the middle of each output frame's interval
    assert len(at12) == 6 and all(_same([at12[i]], [at25[2 * i + 1]]) for i in range(6))
    assert _same(frames(24, 50, start=9), at50[9:])  # a resume inside a repeated pair
