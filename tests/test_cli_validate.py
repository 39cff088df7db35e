"""`talkreel validate` and `talkreel schema` through Typer's CliRunner: output and exit codes."""

from __future__ import annotations

import json

import numpy as np
import skimage.data
from typer.testing import CliRunner

from cli.main import app
from tests.spec_helpers import (
    astronaut,
    faceless,
    job_data,
    make_persona,
    make_project,
    touch,
    wav,
    write_image,
    write_yaml,
)

runner = CliRunner()


def test_valid_batch_exits_0(tmp_path):
    make_project(tmp_path, {"a": job_data(), "b": job_data(kind="intro")})
    result = runner.invoke(app, ["validate", "--no-faces", str(tmp_path / "jobs")])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == "2 valid, 0 error(s), 0 warning(s)"
    assert result.stdout == ""


def test_every_error_of_every_file_one_line_each_exit_2(tmp_path, monkeypatch):
    make_project(
        tmp_path,
        {
            "a": job_data(),
            "b": job_data(kind="faq", emotion=[{"start": 0, "emotion": "joy"}]),
            "c": job_data(engine={"name": "latentsync-1.6", "guidance": 9, "note": "x" * 100}),
        },
    )
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["validate", "--no-faces", "jobs"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "jobs/b.yaml: emotion.0.emotion: unknown emotion 'joy'; known: angry, happy, neutral, sad, surprised, thinking",
        "jobs/b.yaml: question: an faq job needs a question: {text: ...}",
        "jobs/c.yaml: engine.guidance: Input should be less than or equal to 5, got 9",
        "jobs/c.yaml: engine.note: unknown field",
        "1 valid, 4 error(s), 0 warning(s)",
    ]
    assert "Traceback" not in result.output


def test_json_output(tmp_path, monkeypatch):
    make_project(tmp_path, {"a": job_data(), "b": job_data(seed=-2)})
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["validate", "--no-faces", "--json", "jobs/a.yaml", "jobs/b.yaml", "missing.yaml"]
    )
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "valid": ["jobs/a.yaml"],
        "errors": [
            {"file": "missing.yaml", "field": None, "message": "no such file or folder"},
            {
                "file": "jobs/b.yaml",
                "field": "seed",
                "message": "Input should be greater than or equal to 0, got -2",
            },
        ],
        "warnings": [],
    }


def test_audio_is_probed_and_late_emotions_warned(tmp_path, monkeypatch):
    segments = {"segments": [{"file": "../audio/take.wav"}, {"pause": 0.5}, {"file": "../audio/b.wav"}]}
    make_project(
        tmp_path,
        {
            "ok": job_data(
                audio=segments, emotion=[{"start": 0, "emotion": "happy"}, {"start": 3.4, "emotion": "sad"}]
            ),
            "late": job_data(audio=segments, emotion=[{"start": 3.5, "emotion": "sad"}]),
            "junk": job_data(audio="../audio/junk.wav"),
            "image": job_data(audio="../personas/ann/face.png", emotion=[{"start": 99, "emotion": "sad"}]),
            "text": job_data(audio={"text": "Hi."}, emotion=[{"start": 99, "emotion": "sad"}]),
        },
    )
    touch(tmp_path / "audio" / "junk.wav", b"not audio at all")
    write_image(tmp_path / "personas" / "ann" / "face.png", np.zeros((32, 32, 3), np.uint8))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["validate", "--no-faces", "--json", "jobs"])
    assert result.exit_code == 2, result.output
    report = json.loads(result.stdout)
    assert report["valid"] == ["jobs/late.yaml", "jobs/ok.yaml", "jobs/text.yaml"]
    assert [(e["file"], e["field"]) for e in report["errors"]] == [
        ("jobs/image.yaml", "audio.file"),
        ("jobs/junk.yaml", "audio.file"),
    ]
    assert report["errors"][0]["message"] == "no audio stream in personas/ann/face.png"
    assert report["errors"][1]["message"].startswith("'junk.wav' is not a readable media file")
    assert report["warnings"][0] == {
        "file": "jobs/late.yaml",
        "field": "emotion.0.start",
        "message": "3.5 s is not before the end of the audio (3.50 s); this entry has no effect",
    }
    # draft text is synthesised to know its length when it has timed entries
    (drafted,) = report["warnings"][1:]
    assert (drafted["file"], drafted["field"]) == ("jobs/text.yaml", "emotion.0.start")
    assert drafted["message"].startswith("99 s is not before the end of the audio")


def test_allow_outside_paths_flag(tmp_path):
    wav(tmp_path / "shared.wav")
    make_project(tmp_path / "proj", {"a": job_data(audio="../../shared.wav")})
    job = str(tmp_path / "proj" / "jobs" / "a.yaml")
    refused = runner.invoke(app, ["validate", "--no-faces", job])
    assert refused.exit_code == 2
    assert "audio.file: ../../shared.wav is outside the project root" in refused.stderr
    allowed = runner.invoke(app, ["validate", "--no-faces", "--allow-outside-paths", job])
    assert allowed.exit_code == 0, allowed.output


def test_face_check_error_for_a_faceless_persona_and_its_jobs(tmp_path, monkeypatch):
    make_persona(tmp_path, "ann", media=())
    astronaut(tmp_path / "personas" / "ann" / "face.png")
    make_persona(tmp_path, "wall", media=())
    faceless(tmp_path / "personas" / "wall" / "face.png")
    make_persona(tmp_path, "duo", media=())
    portrait = skimage.data.astronaut()
    write_image(tmp_path / "personas" / "duo" / "face.png", np.concatenate([portrait, portrait], axis=1))
    wav(tmp_path / "audio" / "take.wav")
    write_yaml(tmp_path / "jobs" / "a.yaml", job_data())
    write_yaml(tmp_path / "jobs" / "d.yaml", job_data(persona="duo"))
    write_yaml(tmp_path / "jobs" / "w.yaml", job_data(persona="wall"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["validate", "--json", "jobs"])
    assert result.exit_code == 2, result.output
    report = json.loads(result.stdout)
    assert report["valid"] == ["jobs/a.yaml", "jobs/d.yaml"]
    assert report["errors"] == [
        {
            "file": "personas/wall/persona.yaml",
            "field": "source",
            "message": "no face found in the image: personas/wall/face.png",
        },
        {"file": "jobs/w.yaml", "field": "persona", "message": "persona 'wall' has no usable face"},
    ]
    assert [(w["file"], w["field"]) for w in report["warnings"]] == [("personas/duo/persona.yaml", "source")]
    assert report["warnings"][0]["message"].startswith(
        "2 faces found; the largest and most persistent one will be used"
    )

    human = runner.invoke(app, ["validate", "jobs/d.yaml"])
    assert human.exit_code == 0, human.output
    assert human.stderr.splitlines()[0].startswith(
        "warning: personas/duo/persona.yaml: source: 2 faces found"
    )
    assert human.stderr.splitlines()[-1] == "1 valid, 0 error(s), 1 warning(s)"


def test_schema_to_stdout_and_to_a_folder(tmp_path):
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    both = json.loads(result.stdout)
    assert sorted(both) == ["job.schema.json", "persona.schema.json"]
    only = runner.invoke(app, ["schema", "--only", "persona"])
    assert json.loads(only.stdout) == both["persona.schema.json"]

    result = runner.invoke(app, ["schema", "--out", str(tmp_path / "schema")])
    assert result.exit_code == 0
    assert json.loads((tmp_path / "schema" / "job.schema.json").read_text()) == both["job.schema.json"]
    assert (
        json.loads((tmp_path / "schema" / "persona.schema.json").read_text()) == both["persona.schema.json"]
    )

    bad = runner.invoke(app, ["schema", "--only", "batch"])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "error: --only: expected job or persona, got 'batch'"
