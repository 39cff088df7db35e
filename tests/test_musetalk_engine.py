"""The musetalk-1.5 engine on tiny random modules: photo and video personas, resume, determinism, pass-through of
face-less frames, the crop box and mask from the mesh."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.engines.base import RenderSettings
from pipelines.engines.musetalk import crop as mt_crop
from pipelines.engines.musetalk.engine import MuseTalkEngine
from pipelines.expression.track import ExpressionTrack
from pipelines.spec.engines import engine_settings
from pipelines.speech.track import Speech
from tests.face_helpers import moving_portrait_frames, write_image, write_video
from tests.latentsync_helpers import one_torch_thread
from tests.musetalk_helpers import tiny_unet, tiny_vae, whisper_folder

FPS = 25.0


class _Cache:
    def get_or_compute(self, namespace, key, compute):
        return compute()


class _Persona:
    def __init__(self, source):
        self.source = source


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from pipelines.engines.musetalk import audio as mt_audio

    folder = whisper_folder(tmp_path_factory.mktemp("whisper"), seed=2)
    comps = {
        "unet": tiny_unet(0),
        "vae": tiny_vae(1),
        "whisper": mt_audio.load_encoder(folder),
        "feature_extractor": mt_audio.feature_extractor(folder),
    }
    with one_torch_thread():
        yield MuseTalkEngine(device="cpu", components=comps, resolution=32, batch_size=4)


def _speech(n: int, seed: int = 0) -> Speech:
    rng = np.random.default_rng(seed)
    samples = (0.2 * rng.standard_normal(int(n / FPS * 16000))).astype(np.float32)
    return Speech(samples=samples, sample_rate=16000, fps=FPS, n_frames=n)


def _settings(seed: int = 3, **engine) -> RenderSettings:
    return RenderSettings(
        fps=FPS, size=(160, 160), seed=seed, engine=engine_settings({"name": "musetalk-1.5", **engine})
    )


def _render(engine, prepared, n, start=0, seed=3, speech_seed=0):
    speech = _speech(n, speech_seed)
    return list(engine.render(prepared, speech, ExpressionTrack.neutral(n), _settings(seed), start=start))


def _preview_frames(engine, prepared, n):
    """What the preview engine gives MuseTalk: the persona moved, the speech silenced."""
    import dataclasses

    speech = _speech(n)
    silent = dataclasses.replace(speech, samples=np.zeros_like(speech.samples))
    return list(engine.preview.render(prepared, silent, ExpressionTrack.neutral(n), _settings()))


@pytest.fixture(scope="module")
def photo(engine, tmp_path_factory):
    from tests.face_helpers import portrait

    path = tmp_path_factory.mktemp("photo") / "portrait.png"
    write_image(path, portrait())
    return engine.prepare(_Persona(path), _settings(), _Cache())


@pytest.fixture(scope="module")
def video(engine, tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, moving_portrait_frames(12, size=256, gap=(4, 9)), fps=25)
    return engine.prepare(_Persona(path), _settings(), _Cache())


def test_photo_persona_gets_a_regenerated_mouth_deterministically_and_resumes(engine, photo):
    n = 10
    full = _render(engine, photo, n)
    assert len(full) == n and all(f.face_found for f in full)
    assert engine.stats["reference_latents"]["encoded"] >= 1
    again = _render(engine, photo, n)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(full, again, strict=True))
    resumed = _render(engine, photo, n, start=6)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(full[6:], resumed, strict=True))
    engine.prefetch = False
    try:
        unprefetched = _render(engine, photo, n)
    finally:
        engine.prefetch = True
    assert all(np.array_equal(a.image, b.image) for a, b in zip(full, unprefetched, strict=True))

    base = _preview_frames(engine, photo, n)
    diff = np.abs(full[0].image.astype(int) - base[0].image.astype(int)).max(axis=2)
    ys, xs = np.nonzero(diff > 8)
    assert ys.size > 50  # the lower face was regenerated
    from pipelines.face.landmarks import detect_faces

    p = detect_faces(base[0].image)[0].points
    assert (
        ys.min() >= (p[168, 1] + p[1, 1]) / 2 - 3
    )  # ... and nothing above the mask edge (the eyes are kept)
    # the speech drives the mouth
    other = _render(engine, photo, n, speech_seed=1)
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(full, other, strict=True))
    # a still with no idle motion is the same crop on every frame: encoded once, reused after
    assert engine.stats["reference_latents"]["reused"] >= n - 2


def test_video_persona_passes_face_less_frames_through(engine, video):
    n = 16  # longer than the 12-frame clip: ping-pong
    frames = _render(engine, video, n)
    base = _preview_frames(engine, video, n)
    assert len(frames) == n
    for i, (f, b) in enumerate(zip(frames, base, strict=True)):
        assert f.face_found == b.face_found, i
        if not b.face_found:
            assert np.array_equal(f.image, b.image), i
    assert not frames[6].face_found  # (gaps of up to 2 frames are bridged by the face track)
    assert not np.array_equal(frames[0].image, base[0].image)
    resumed = _render(engine, video, n, start=9)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames[9:], resumed, strict=True))


def test_face_box_follows_upstreams_convention_on_the_mesh():
    from pipelines.face.landmarks import detect_faces
    from tests.face_helpers import portrait

    image = portrait()
    (face,) = detect_faces(image)[:1]
    p = face.points.astype(np.float64)
    box = mt_crop.face_box(p, image.shape[:2])
    chin = p[list(mt_crop.LOWER_OVAL), 1].max()
    n29 = mt_crop.nose29(p)[1]
    # top mirrored about landmark 29, bottom at the chin plus the scaled margin, sides at the jaw contour
    assert abs(box.y1 - (n29 - (chin - n29))) <= 1
    assert chin < box.y2 <= chin + 1 + mt_crop.EXTRA_MARGIN * (chin - box.y1) / 256
    assert box.x1 <= p[list(mt_crop.LOWER_OVAL), 0].min() and box.x2 >= p[list(mt_crop.LOWER_OVAL), 0].max()
    # the mask edge (the box's middle row) lies between the nose bridge and the tip
    mid = (box.y1 + box.y2) / 2
    assert p[168, 1] < mid < p[1, 1]
    alpha, (x0, y0, x1, y1) = mt_crop.blend_mask(p, box, image.shape[:2])
    assert alpha.shape == (y1 - y0, x1 - x0) and 0 <= alpha.min() and alpha.max() <= 1
    rows = np.nonzero(alpha.max(axis=1) > 0.5)[0] + y0
    assert rows.min() >= mid - 2  # nothing above the mask edge is replaced
    lips = p[13].round().astype(int)
    assert alpha[lips[1] - y0, lips[0] - x0] > 0.9  # the mouth is regenerated
    eye = p[159].round().astype(int)
    assert alpha[eye[1] - y0, eye[0] - x0] == 0  # the eyes are kept


@pytest.mark.parametrize("loop", ["repeat", "hold"])
def test_video_persona_follows_the_personas_loop(engine, video, loop):
    """Past the 12-frame clip the meshes come from the same source frames as the preview's moved frames."""
    import dataclasses

    n = 20  # frame 16 is source 6 (no face) in ping-pong, 4 in repeat, 11 in hold
    speech = _speech(n)
    settings = dataclasses.replace(_settings(), loop=loop)
    frames = list(engine.render(video, speech, ExpressionTrack.neutral(n), settings))
    silent = dataclasses.replace(speech, samples=np.zeros_like(speech.samples))
    base = list(engine.preview.render(video, silent, ExpressionTrack.neutral(n), settings))
    assert [f.face_found for f in frames] == [b.face_found for b in base]
    for i, (f, b) in enumerate(zip(frames, base, strict=True)):
        if not b.face_found:
            assert np.array_equal(f.image, b.image), i


def test_silent_stretches_keep_the_previews_closed_mouth_and_the_gate_turns_off(engine, photo):
    n = 20
    speech = _speech(n, seed=4)
    per_frame = len(speech.samples) // n
    speech.samples[6 * per_frame : 16 * per_frame] = 0.0  # frames 6..15 silent (0.4 s)
    expression = ExpressionTrack.neutral(n)
    gated = list(engine.render(photo, speech, expression, _settings()))
    assert engine.describe()["closed_in_silence"] == {"frames_closed": 4, "frames_faded": 6}
    ungated = list(engine.render(photo, speech, expression, _settings(close_in_silence=False)))
    assert "closed_in_silence" not in engine.describe()
    base = _preview_frames(engine, photo, n)
    for i in range(n):
        g, u, b = gated[i].image, ungated[i].image, base[i].image
        if 9 <= i <= 12:  # inside the silence, past the fades: the preview's frame, its mouth closed
            assert np.array_equal(g, b), i
            assert not np.array_equal(u, b), i  # ... where the model's own frame has its mouth
        elif 6 <= i <= 15:  # fading: between the two
            assert not np.array_equal(g, u) and not np.array_equal(g, b), i
            lo, hi = np.minimum(u, b).astype(int) - 1, np.maximum(u, b).astype(int) + 1
            assert ((g >= lo) & (g <= hi)).all(), i
        else:  # speech: the gate changes nothing
            assert np.array_equal(g, u), i


def test_silence_gate_hysteresis_fades_and_clip_edges():
    from pipelines.engines.musetalk.silence import gate

    silent = np.zeros(40, bool)
    silent[:6] = True  # at the clip's start: closed from frame 0, fading out before the speech
    silent[10:13] = True  # 0.12 s between words: left to the model
    silent[20:30] = True
    silent[35:] = True  # at the end: fading in, closed to the last frame
    w = gate(silent, 25.0)
    np.testing.assert_allclose(w[:6], [1, 1, 1, 0.75, 0.5, 0.25])
    assert not w[6:20].any()
    np.testing.assert_allclose(w[20:30], [0.25, 0.5, 0.75, 1, 1, 1, 1, 0.75, 0.5, 0.25])
    assert not w[30:35].any()
    np.testing.assert_allclose(w[35:], [0.25, 0.5, 0.75, 1, 1])
    assert not gate(np.zeros(5, bool), 25.0).any() and gate(np.ones(5, bool), 25.0).all()
