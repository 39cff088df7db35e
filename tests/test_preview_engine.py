"""The preview engine end to end on the package portrait: silence keeps the mouth closed, speech opens it
(both measured by MediaPipe on the rendered frames), resumed renders match, video personas, bad sources."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pipelines.engines.base import Engine, create_engine
from pipelines.engines.preview.engine import PreviewEngine
from pipelines.errors import InputError
from pipelines.expression.build import build_expression_track
from pipelines.expression.track import ExpressionTrack
from tests.preview_helpers import (
    FPS,
    SIZE,
    MemoryCache,
    openings,
    portrait_path,
    prepared,
    settings,
    silence,
    tts_speech,
)

CLOSED = 0.06  # inner-lip gap / pupil distance of lips that touch (MediaPipe puts the inner lips ~0.03 apart)


def _render(speech, expression=None, start=0, **kw):
    expression = expression or build_expression_track([], speech.n_frames, FPS, seed=0, idle=0.0)
    return list(PreviewEngine().render(prepared(), speech, expression, settings(**kw), start=start))


def test_registry_creates_a_preview_engine():
    engine = create_engine("preview")
    assert isinstance(engine, Engine) and engine.name == "preview"


def test_prepare_is_cached_and_face_centred():
    cache = MemoryCache()
    persona = SimpleNamespace(source=portrait_path(), source_kind="image")
    a = PreviewEngine().prepare(persona, settings(), cache)
    b = PreviewEngine().prepare(persona, settings(), cache)
    assert cache.computed == 1
    np.testing.assert_array_equal(a.frame, b.frame)
    h, w = a.frame.shape[:2]
    assert (w - 2 * a.margin, h - 2 * a.margin) == SIZE
    nose = a.points[0, 1] - a.margin
    assert abs(nose[0] - SIZE[0] / 2) < 0.08 * SIZE[0]  # the face is in the middle


def test_an_engine_keeps_its_recent_personas_prepared():
    # the jobs of a batch mostly share a persona: the second prepare hands back the same object (its warp rig
    # built once), a different size is another entry
    cache = MemoryCache()
    persona = SimpleNamespace(source=portrait_path(), source_kind="image")
    engine = PreviewEngine()
    first = engine.prepare(persona, settings(), cache)
    assert engine.prepare(persona, settings(), cache) is first
    assert first.rig is not None
    other = engine.prepare(persona, settings((64, 64)), cache)
    assert other is not first and other.size == (64, 64)
    assert cache.computed == 2


def test_frames_have_the_job_size_and_count():
    speech = silence(0.4)
    frames = _render(speech)
    assert len(frames) == speech.n_frames
    assert all(
        f.image.shape == (SIZE[1], SIZE[0], 3) and f.image.dtype == np.uint8 and f.face_found for f in frames
    )


def test_silence_keeps_the_mouth_closed():
    frames = _render(silence(1.2), build_expression_track([], 30, FPS, seed=0, idle=1.0))
    measured = openings([f.image for f in frames[::3]])
    assert not np.isnan(measured).any()
    # the portrait smiles with parted lips; in silence they are pressed shut (inner-lip gap ~0), and stay so
    # (MediaPipe reads the pressed lips of these frames 0.00-0.03 apart: the sliver of squeezed teeth between
    # them, resampled once, is a little crisper than the warp-then-move frames' 0.00-0.02)
    assert openings([prepared().frame])[0] > 0.1
    assert measured.max() < CLOSED and np.ptp(measured) < 0.03


def test_speech_opens_the_mouth_and_it_follows_the_words():
    speech = tts_speech()
    frames = _render(speech)
    measured = openings([f.image for f in frames])
    rest = openings([prepared().frame])[0]
    assert np.nanpercentile(measured, 95) - rest > 0.08
    # the leading silence (0.4 s) stays closed, the speech moves
    lead = int(0.3 * FPS)
    assert measured[:lead].max() < CLOSED
    assert np.nanstd(measured[lead:-lead]) > 0.02


def test_mouth_gain_zero_keeps_the_mouth_from_opening():
    speech = tts_speech()
    frames = _render(speech, mouth_gain=0.0)
    rest = openings([prepared().frame])[0]
    # no speech opening: the parted lips of this smiling portrait stay pressed shut throughout (rounding and
    # spreading still reshape them a little)
    assert openings([f.image for f in frames[::4]]).max() < 0.5 * rest
    assert rest > CLOSED


def test_resume_gives_the_same_frames():
    speech = tts_speech()
    expression = build_expression_track(
        [(0, None, "happy", 0.8), (1.0, None, "surprised", 1.0)], speech.n_frames, FPS, 5
    )
    full = _render(speech, expression)
    k = speech.n_frames // 2
    tail = _render(speech, expression, start=k)
    assert len(tail) == speech.n_frames - k
    for a, b in zip(full[k:], tail, strict=True):
        np.testing.assert_array_equal(a.image, b.image)


def test_progress_counts_frames():
    speech = silence(0.3)
    seen = []
    list(
        PreviewEngine().render(
            prepared(),
            speech,
            ExpressionTrack.neutral(speech.n_frames),
            settings(),
            progress=seen.append,
            start=2,
        )
    )
    assert seen == list(range(1, speech.n_frames - 2 + 1))


def test_expression_length_must_match():
    with pytest.raises(Exception, match="expression track has 3 frames"):
        _render(silence(0.4), ExpressionTrack.neutral(3))


def test_portrait_without_a_face_is_an_input_error(tmp_path):
    import cv2

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((128, 128, 3), 200, np.uint8))
    with pytest.raises(InputError, match="no face found"):
        PreviewEngine().prepare(SimpleNamespace(source=blank, source_kind="image"), settings(), MemoryCache())


def _video_persona(tmp_path, clip: list) -> tuple:
    """A preview engine and its preparation of `clip` (RGB frames) as a video persona (CRF 12, a silent track)."""
    from pipelines.media.video_out import encode_final
    from tests.spec_helpers import wav

    silent = wav(tmp_path / "silence.wav", seconds=1.0)
    video = encode_final(iter(clip), len(clip), FPS, SIZE, silent, tmp_path / "persona.mp4", crf=12)
    engine = PreviewEngine()
    prep = engine.prepare(
        SimpleNamespace(source=video, source_kind="video"), settings(size=None), MemoryCache()
    )
    return engine, prep


def test_video_persona_plays_ping_pong_and_passes_faceless_frames_through(tmp_path):
    # a 12-frame persona clip: the portrait drifting sideways, with four grey frames (no face) in the middle
    # (the face track bridges gaps of up to two frames)
    base = prepared().frame[: SIZE[1], : SIZE[0]]
    clip = []
    for i in range(12):
        frame = np.roll(base, i, axis=1)
        if 5 <= i <= 8:
            frame = np.full_like(base, 128)
        clip.append(frame)
    engine, prep = _video_persona(tmp_path, clip)
    assert prep.n_source == 12 and not prep.found[5:9].any() and prep.found[:5].all()
    speech = tts_speech()
    expression = build_expression_track([], speech.n_frames, FPS, 0)
    frames = list(engine.render(prep, speech, expression, settings(size=None)))
    assert len(frames) == speech.n_frames > 24  # longer than the clip: it plays forwards and backwards
    flags = [f.face_found for f in frames]
    assert not any(flags[5:9]) and flags[16] is False  # 16 -> source 6 on the way back
    assert flags[0] and flags[3]
    # faceless frames pass through (held as JPEG quality 95 in memory for the ping-pong: visually identical)
    from pipelines.media.video_in import open_source

    src = list(open_source(prep.source, FPS).frames())
    assert np.abs(frames[6].image.astype(int) - src[6]).mean() < 1.0


def test_a_photo_opens_to_the_gap_the_speech_asks_whatever_its_rest_gap():
    """The astronaut grins with her teeth showing (a rest gap of ~0.17 pupil distances): a gap above that opens
    the warp by the difference, a gap under it presses the lips part way, silence presses them shut (here with
    the rig's own landmarks as the measure, the mapping's fallback)."""
    from pipelines.engines.preview.engine import photo_mouth
    from pipelines.face.mesh import mouth_opening

    rig = prepared().rig
    rest = mouth_opening(rig.points)
    assert rest > 0.1 and not rig.closed_at_rest
    gaps = np.array([0.0, 0.5 * rest, rest, rest + 0.1, rest + 0.2])
    params = photo_mouth(rig, np.stack([gaps, np.zeros(5), np.zeros(5), np.zeros(5)], 1))
    assert params[:, 3].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0], abs=1e-4)
    assert params[0, 0] == 0.0 and np.all(np.diff(params[2:, 0]) > 0)
    for gap, row in zip(gaps[2:], params[2:], strict=True):
        moved = rig.displaced_landmarks(dict(zip(("mouth_open", "mouth_width"), row[:2], strict=True)))
        assert mouth_opening(moved) == pytest.approx(gap, abs=0.02)


def _drawn_gap_errors(prep) -> np.ndarray:
    """How far the gap QC's mesh measures on the drawn mouth is from the gap asked, over the face's range: the
    mean over three small head moves (other than the engine's own), as a render moving its head is measured."""
    import cv2

    from pipelines.engines.preview.engine import photo_mouth
    from pipelines.face.landmarks import detect_faces
    from pipelines.face.mesh import mouth_opening

    rest, widest = float(prep.gaps[0]), float(prep.gaps[-1])
    asked = np.linspace(rest + 0.03, min(widest, 0.4) - 0.01, 4)
    params = photo_mouth(prep.rig, np.stack([asked, 0 * asked, 0 * asked, 0 * asked], 1), prep.gaps)
    source = cv2.cvtColor(prep.frame, cv2.COLOR_RGB2RGBA)
    h, w = prep.frame.shape[:2]
    got = []
    for row in params:
        image = prep.rig.apply(source, {"mouth_open": row[0], "mouth_closure": row[3]})
        reads = []
        for angle, scale, shift in ((1.0, 1.0, 0.3), (-1.0, 1.02, -0.6), (0.0, 0.99, 1.1)):
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
            matrix[0, 2] += shift
            moved = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT101)
            reads.append(mouth_opening(detect_faces(cv2.cvtColor(moved, cv2.COLOR_RGBA2RGB))[0].points))
        got.append(np.mean(reads))
    return np.array(got) - asked


def test_a_photo_opens_to_the_gap_the_speech_asks_as_the_mesh_measures_it():
    """The speech's gaps are in what MediaPipe's mesh measures on a real speaker; the warp's landmarks only model
    what the mesh sees on the drawn mouth: the mapping is measured on the portrait itself, so the mesh reads the
    gap asked between the measured openings too. (On this portrait the landmarks' model was already within
    0.025; on the real portraits of the next test it was up to 0.056 short.)"""
    assert np.abs(_drawn_gap_errors(prepared())).max() <= 0.03


def test_real_portraits_open_to_the_gap_the_speech_asks(shared_dir):
    """The same on the real portraits at hand (a painted Mona Lisa, whose slit the mesh reads as closed for the
    first quarter of the warp's range; faces whose mesh read 0.7x the landmarks' gain). Mapped through the
    landmarks, the drawn gaps were 0.026-0.056 short on three of the five (now within 0.012)."""
    from pipelines.engines.preview.engine import PreviewEngine

    portraits = sorted((shared_dir / "data" / "personas").glob("*.png"))
    if not portraits:
        pytest.skip("no portraits in ../shared")
    for path in portraits:
        prep = PreviewEngine().prepare(
            SimpleNamespace(source=path, source_kind="image"), settings(), MemoryCache()
        )
        assert np.abs(_drawn_gap_errors(prep)).max() <= 0.025, path.name


def test_a_video_persona_under_a_short_speech_gives_the_frames_a_long_one_starts_with(tmp_path):
    # the render holds (and decodes) only the source frames its speech shows: a speech shorter than the clip
    # gets the very frames a speech that plays the clip back and forth starts with
    base = prepared().frame[: SIZE[1], : SIZE[0]]
    clip = [np.roll(base, 2 * i, axis=1) for i in range(12)]
    engine, prep = _video_persona(tmp_path, clip)
    long, short = silence(1.2), silence(0.2)
    values = build_expression_track([(0, None, "happy", 0.8)], long.n_frames, FPS, seed=0).values
    frames = {}
    for speech in (long, short):
        expression = ExpressionTrack(values[: speech.n_frames])
        frames[speech.n_frames] = list(engine.render(prep, speech, expression, settings(size=None)))
    assert short.n_frames < 12 < long.n_frames
    for a, b in zip(frames[short.n_frames], frames[long.n_frames], strict=False):
        np.testing.assert_array_equal(a.image, b.image)
