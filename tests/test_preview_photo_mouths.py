"""A photo persona's `mouths:` clip: the photo speaks with the clip's mouths (the record says so), in the photo's
colours (a greyscale photo gets a greyscale mouth from a colour clip); a clip that cannot give mouths falls back
to the painted interior and says why; a bad clip is an error of the `mouths` field at validate.
The clip is made here from the package portrait: its own mouth opened and closed by the warp rig."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.engines.preview.engine import PreviewEngine
from pipelines.expression.build import build_expression_track
from pipelines.face import mesh
from tests.face_helpers import write_image, write_video
from tests.preview_helpers import (
    FPS,
    SIZE,
    MemoryCache,
    openings,
    portrait_path,
    prepared,
    scratch_dir,
    settings,
    silence,
    tts_speech,
)
from tests.spec_helpers import faceless, job_data, make_persona, wav, write_yaml

CLOSED = 0.06  # inner-lip gap / pupil distance of lips that touch


@functools.lru_cache(maxsize=1)
def talking_clip() -> Path:
    """40 frames of the portrait opening and closing its mouth three times (slightly moving, as footage does);
    the portrait's smile shows its teeth, so its lips are pressed where the opening is small, as a render does."""
    prep = prepared()
    opening = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(40) / 13)
    closure = np.clip(1.0 - opening / 0.12, 0.0, 1.0)
    frames = []
    for k in range(40):
        params = {"mouth_open": opening[k], "mouth_closure": closure[k]}
        image = np.ascontiguousarray(prep.rig.apply(prep.frame, params)[..., :3])
        shift = np.float32([[1, 0, 2 * np.sin(k / 7)], [0, 1, np.cos(k / 9)]])
        frames.append(cv2.warpAffine(image, shift, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT101))
    path = scratch_dir("talkreel-clip-") / "talking.mp4"
    write_video(path, frames)
    return path


@functools.lru_cache(maxsize=1)
def narrow_clip() -> Path:
    """Like `talking_clip`, but its mouth never opens wide (the warp's opening up to 0.2 of its range)."""
    prep = prepared()
    opening = 0.1 - 0.1 * np.cos(2 * np.pi * np.arange(40) / 13)
    closure = np.clip(1.0 - opening / 0.12, 0.0, 1.0)
    frames = [
        np.ascontiguousarray(prep.rig.apply(prep.frame, {"mouth_open": o, "mouth_closure": c})[..., :3])
        for o, c in zip(opening, closure, strict=True)
    ]
    path = scratch_dir("talkreel-clip-") / "narrow.mp4"
    write_video(path, frames)
    return path


def _photo_persona(source: Path, clip: Path | None):
    return SimpleNamespace(source=source, source_kind="image", mouths=clip)


def _render(engine, prep, speech):
    expression = build_expression_track([], speech.n_frames, FPS, seed=0, idle=0.0)
    return [f.image for f in engine.render(prep, speech, expression, settings())]


def test_a_photo_speaks_with_its_clips_mouths_and_the_record_says_so():
    engine = PreviewEngine()
    prep = engine.prepare(_photo_persona(portrait_path(), talking_clip()), settings(), MemoryCache())
    facts = engine.describe()["mouths"]
    assert facts["source"] == "the persona's mouths: clip talking.mp4" and facts["entries"] >= 30
    speech = tts_speech()
    opened = openings(_render(engine, prep, speech))
    lead = int(0.3 * FPS)
    assert np.nanmax(opened) > CLOSED + 0.1, "speech opens the mouth"
    assert np.nanmax(opened[:lead]) < CLOSED, "the silence before the speech keeps it closed"
    # a persona without the clip is another prepared persona (the clip is part of its key), painted
    plain = engine.prepare(_photo_persona(portrait_path(), None), settings(), MemoryCache())
    assert plain.mouths is None and engine.describe()["mouths"] == "painted interior (photo persona)"


def test_a_greyscale_photo_gets_a_greyscale_mouth_from_a_colour_clip(tmp_path):
    grey = cv2.cvtColor(cv2.cvtColor(prepared().frame, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    write_image(tmp_path / "grey.png", grey)
    engine = PreviewEngine()
    prep = engine.prepare(_photo_persona(tmp_path / "grey.png", talking_clip()), settings(), MemoryCache())
    assert prep.mouths is not None
    frames = _render(engine, prep, tts_speech())
    widest = int(np.nanargmax(openings(frames)))
    mouth = prep.points[0][list(mesh.LIPS_OUTER)] - prep.margin
    x0, y0 = np.floor(mouth.min(0)).astype(int) - 4
    x1, y1 = np.ceil(mouth.max(0)).astype(int) + 4
    region = frames[widest][y0:y1, x0:x1].astype(int)
    assert np.abs(region - region.mean(-1, keepdims=True)).max() <= 3, "no colour in the mouth"
    clip_region = prepared().frame[y0 + prep.margin : y1 + prep.margin, x0 + prep.margin : x1 + prep.margin]
    clip_region = clip_region.astype(int)
    assert np.abs(clip_region - clip_region.mean(-1, keepdims=True)).max() > 20, "the clip has colour"


def test_a_clip_whose_mouth_does_not_move_falls_back_to_the_painted_interior(tmp_path):
    still = np.ascontiguousarray(prepared().frame)
    write_video(tmp_path / "still.mp4", [still] * 20)
    engine = PreviewEngine()
    prep = engine.prepare(_photo_persona(portrait_path(), tmp_path / "still.mp4"), settings(), MemoryCache())
    assert prep.mouths is None
    assert engine.describe()["mouths"].startswith(
        "painted interior (photo persona; no mouths from its clip: the footage's mouth barely moves"
    )
    frames = _render(engine, prep, silence(0.4))  # renders, with the painted interior's rig
    assert len(frames) == 10 and frames[0].shape == (SIZE[1], SIZE[0], 3)


def test_validate_names_the_mouths_field_of_a_clip_without_a_face(tmp_path, monkeypatch):
    make_persona(tmp_path, "ann", media=(), mouths="talking.mp4")
    write_image(tmp_path / "personas" / "ann" / "face.png", prepared().frame)
    blank = faceless(tmp_path / "blank.png")
    write_video(tmp_path / "personas" / "ann" / "talking.mp4", [cv2.imread(str(blank))[..., ::-1]] * 10)
    wav(tmp_path / "audio" / "take.wav")
    write_yaml(tmp_path / "jobs" / "a.yaml", job_data())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate", "--json", "jobs"])
    assert result.exit_code == 2, result.output
    errors = json.loads(result.stdout)["errors"]
    assert errors[0]["file"] == "personas/ann/persona.yaml" and errors[0]["field"] == "mouths"
    assert errors[0]["message"].startswith("no face found in any of")
    assert errors[0]["message"].endswith("personas/ann/talking.mp4")


@pytest.mark.parametrize(
    ("media", "overrides", "expected"),
    [
        (("face.png", "smile.png"), {"mouths": "smile.png"}, "expected a video"),
        (("face.png",), {"mouths": "gone.mp4"}, "file not found"),
        (("face.mp4", "talk.mp4"), {"source": "face.mp4", "mouths": "talk.mp4"}, "only for a photo source"),
    ],
)
def test_a_bad_mouths_field_is_a_persona_error(tmp_path, media, overrides, expected):
    from pipelines.errors import InputError
    from pipelines.spec.loader import load_persona

    make_persona(tmp_path, media=media, **overrides)
    with pytest.raises(InputError) as info:
        load_persona(tmp_path / "personas" / "ann")
    assert info.value.field == "mouths" and expected in info.value.message


def test_the_clip_is_one_of_the_jobs_inputs(tmp_path):
    """A changed clip makes the job's output out of date (its content hash covers the clip)."""
    from pipelines.spec.loader import load_batch

    make_persona(tmp_path, media=("face.png", "talking.mp4"), mouths="talking.mp4")
    wav(tmp_path / "audio" / "take.wav")
    write_yaml(tmp_path / "jobs" / "a.yaml", job_data())
    (job,) = load_batch([tmp_path / "jobs" / "a.yaml"]).jobs
    assert tmp_path / "personas" / "ann" / "talking.mp4" in job.input_files()


def test_a_resumed_render_of_a_photo_with_a_clip_gives_the_same_frames():
    engine = PreviewEngine()
    prep = engine.prepare(_photo_persona(portrait_path(), talking_clip()), settings(), MemoryCache())
    speech = tts_speech()
    expression = build_expression_track([], speech.n_frames, FPS, seed=0, idle=1.0)
    full = [f.image for f in engine.render(prep, speech, expression, settings())]
    start = speech.n_frames // 2
    resumed = [f.image for f in engine.render(prep, speech, expression, settings(), start=start)]
    assert len(resumed) == len(full) - start
    assert all(np.array_equal(a, b) for a, b in zip(resumed, full[start:], strict=True))


def test_speech_wider_than_the_clips_widest_mouth_opens_it_further_and_the_record_counts_those_frames():
    engine = PreviewEngine()
    prep = engine.prepare(_photo_persona(portrait_path(), narrow_clip()), settings(), MemoryCache())
    assert prep.mouths is not None
    widest = prep.mouths.widest
    facts = engine.describe()["mouths"]
    assert facts["opening_max"] == round(widest, 3) and "opened further" in facts["extended"]
    speech = tts_speech()
    frames = _render(engine, prep, speech)
    facts = engine.describe()["mouths"]
    assert 0 < facts["extended_frames"] < facts["frames"] == speech.n_frames
    opened = openings(frames)
    # the clip's widest mouth, pasted, measures about `widest`; the speech's widest frames open further
    assert np.nanmax(opened) > widest + 0.05, f"{np.nanmax(opened):.3f} vs the clip's widest {widest:.3f}"
    assert np.nanmax(opened) < 0.36 + 0.08  # (what speech asks at most, OPEN_GAP, with MediaPipe's noise)
    # a resumed render opens the same frames as far
    start = speech.n_frames // 2
    expression = build_expression_track([], speech.n_frames, FPS, seed=0, idle=0.0)
    resumed = [f.image for f in engine.render(prep, speech, expression, settings(), start=start)]
    assert all(np.array_equal(a, b) for a, b in zip(resumed, frames[start:], strict=True))
