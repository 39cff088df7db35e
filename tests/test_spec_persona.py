"""Persona files: fields, defaults, and every error message."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.errors import InputError
from pipelines.expression.track import PARAMS
from pipelines.spec import load_batch, load_persona
from pipelines.spec.engines import LatentSyncSettings
from pipelines.spec.loader import load_persona_file
from tests.spec_helpers import CONSENT, errors_of, make_persona, touch

BUILTIN = "angry, happy, neutral, sad, surprised, thinking"


def test_full_persona(tmp_path):
    path = make_persona(
        tmp_path,
        media=("face.png", "smile.mp4"),
        looks={"happy": "smile.mp4"},
        emotions={"proud": {"smile": 0.4, "head_pitch": 3}, "happy": {"smile": 0.7}},
        engine="latentsync-1.6",
        consent={**CONSENT, "note": "own photo, all rights"},
        disclosure={"text": "KI-generiert", "position": "top-left"},
    )
    persona = load_persona(path)
    folder = tmp_path / "personas" / "ann"
    assert persona.name == "Ann Example"
    assert persona.source == folder / "face.png"
    assert persona.source_kind == "image"
    assert persona.looks == {"happy": folder / "smile.mp4"}
    assert persona.emotions["proud"] == {"smile": 0.4, "head_pitch": 3.0}
    assert persona.known_emotions() == {"angry", "happy", "neutral", "sad", "surprised", "thinking", "proud"}
    assert persona.engine == LatentSyncSettings(name="latentsync-1.6")
    assert persona.consent.granted_on == dt.date(2024, 5, 1)
    assert persona.consent.note == "own photo, all rights"
    assert (persona.disclosure.label, persona.disclosure.text, persona.disclosure.position) == (
        True,
        "KI-generiert",
        "top-left",
    )


def test_defaults_and_loading_by_folder(tmp_path):
    make_persona(tmp_path, source="clip.MOV", media=("clip.MOV",))
    loaded = load_persona_file(tmp_path / "personas" / "ann")
    assert loaded.id == "ann"
    assert loaded.persona.source_kind == "video"
    assert loaded.persona.engine is None
    assert loaded.persona.looks == {} and loaded.persona.emotions == {}
    assert (loaded.persona.disclosure.label, loaded.persona.disclosure.text) == (True, "AI-generated")
    assert loaded.persona.disclosure.position == "bottom-right"


def test_label_off_only_when_explicit(tmp_path):
    make_persona(tmp_path, disclosure={"label": False})
    assert load_persona(tmp_path / "personas" / "ann").disclosure.label is False


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"consent": None}, ("consent", "required field missing")),
        ({"consent": {"granted_by": "x", "scope": "y"}}, ("consent.granted_on", "required field missing")),
        (
            {"consent": {**CONSENT, "granted_on": "2999-01-01"}},
            ("consent.granted_on", "2999-01-01 is in the future"),
        ),
        (
            {"consent": {**CONSENT, "granted_on": "last year"}},
            (
                "consent.granted_on",
                "Input should be a valid date or datetime, input is too short, got 'last year'",
            ),
        ),
        ({"name": ""}, ("name", "String should have at least 1 character, got ''")),
        ({"name": None}, ("name", "required field missing")),
        (
            {"source": "face.gif"},
            (
                "source",
                "expected an image (.png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff) or a video (.mp4, .mov, .mkv, .webm, .avi, .m4v), got 'face.gif'",
            ),
        ),
        (
            {"emotions": {"proud": {"grin": 1}}},
            ("emotions.proud.grin", f"unknown expression parameter; known: {', '.join(PARAMS)}"),
        ),
        (
            {"emotions": {"proud": {"smile": float("inf")}}},
            ("emotions.proud.smile", "Input should be a finite number, got inf"),
        ),
        ({"looks": {"joy": "face.png"}}, ("looks.joy", f"unknown emotion 'joy'; known: {BUILTIN}")),
        (
            {"engine": "warp"},
            (
                "engine",
                "unknown engine 'warp'; known: preview, latentsync-1.5, latentsync-1.6, echomimic-v2, echomimic-v2-acc, "
                "musetalk-1.5, echomimic-v3-flash, echomimic-v3-preview",
            ),
        ),
        (
            {"disclosure": {"position": "middle"}},
            (
                "disclosure.position",
                "Input should be 'top-left', 'top-right', 'bottom-left' or 'bottom-right', got 'middle'",
            ),
        ),
        (
            {"voice": "x"},
            (
                "voice",
                "unknown field; known: consent, disclosure, emotions, engine, face, looks, loop, mouths, name, poses, source",
            ),
        ),
    ],
)
def test_invalid_persona_field(tmp_path, overrides, expected):
    if overrides.get("source") == "face.gif":
        touch(tmp_path / "personas" / "ann" / "face.gif")
    make_persona(tmp_path, **overrides)
    batch = load_batch([tmp_path / "personas" / "ann" / "persona.yaml"])
    assert expected in errors_of(batch), [e.one_line() for e in batch.errors]
    with pytest.raises(InputError) as info:
        load_persona(tmp_path / "personas" / "ann")
    assert info.value.file == str(tmp_path / "personas" / "ann" / "persona.yaml")


def test_missing_source_file(tmp_path):
    make_persona(tmp_path, source="gone.jpg")
    with pytest.raises(InputError) as info:
        load_persona(tmp_path / "personas" / "ann" / "persona.yaml")
    assert (info.value.field, info.value.message) == (
        "source",
        f"file not found: {tmp_path / 'personas' / 'ann' / 'gone.jpg'}",
    )


def test_load_persona_summarises_several_errors(tmp_path):
    make_persona(tmp_path, name=None, consent=None)
    with pytest.raises(
        InputError,
        match=r"^.*persona.yaml: name: required field missing \(and 1 more; see talkreel validate\)$",
    ):
        load_persona(tmp_path / "personas" / "ann")


def test_persona_of_a_job_reported_once_with_a_job_error(tmp_path):
    from tests.spec_helpers import job_data, write_yaml

    make_persona(tmp_path, consent=None)
    touch(tmp_path / "audio" / "take.wav")
    write_yaml(tmp_path / "jobs" / "a.yaml", job_data())
    write_yaml(tmp_path / "jobs" / "b.yaml", job_data())
    batch = load_batch([tmp_path / "jobs"])
    assert batch.jobs == []
    assert [(e.file.rsplit("/", 2)[-2:], e.field, e.message) for e in batch.errors] == [
        (["ann", "persona.yaml"], "consent", "required field missing"),
        (["jobs", "a.yaml"], "persona", "persona 'ann' has errors (listed above)"),
        (["jobs", "b.yaml"], "persona", "persona 'ann' has errors (listed above)"),
    ]
