"""`talkreel personas list|show|check` through Typer's CliRunner: output and exit codes."""

from __future__ import annotations

import json

import numpy as np
import skimage.data
from typer.testing import CliRunner

from cli.main import app
from tests.spec_helpers import astronaut, faceless, make_persona, write_image

runner = CliRunner()


def one_line(text: str) -> str:
    # cli.errors prints through Rich, which wraps long lines at the console width
    return " ".join(text.split())


def test_list_table_and_json(tmp_path, monkeypatch):
    make_persona(tmp_path, "ann", engine="latentsync-1.6")
    make_persona(tmp_path, "bob", name="Bob B", source="clip.mp4", media=("clip.mp4",))
    monkeypatch.chdir(tmp_path / "personas")  # found from a subfolder too
    result = runner.invoke(app, ["personas", "list"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "ann" in line or "bob" in line]
    assert [line.split() for line in lines] == [
        ["│", "ann", "│", "Ann", "Example", "│", "image", "│", "latentsync-1.6", "│"],
        ["│", "bob", "│", "Bob", "B", "│", "video", "│", "preview", "│"],
    ]
    result = runner.invoke(app, ["personas", "list", "--json"])
    assert json.loads(result.stdout) == [
        {"id": "ann", "name": "Ann Example", "source": "image", "engine": "latentsync-1.6"},
        {"id": "bob", "name": "Bob B", "source": "video", "engine": "preview"},
    ]


def test_list_reports_invalid_personas_exit_2(tmp_path):
    make_persona(tmp_path, "ann")
    make_persona(tmp_path, "bad", consent=None)
    result = runner.invoke(app, ["personas", "list", "--root", str(tmp_path), "--json"])
    assert result.exit_code == 2
    assert [row["id"] for row in json.loads(result.stdout)] == ["ann"]
    assert (
        result.stderr.strip()
        == f"{tmp_path / 'personas' / 'bad' / 'persona.yaml'}: consent: required field missing"
    )


def test_no_personas_folder_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["personas", "list"])
    assert result.exit_code == 2
    assert (
        one_line(result.stderr)
        == f"error: {tmp_path}: no personas/ folder here or in a parent folder; use --root DIR"
    )


def test_show_fields(tmp_path):
    make_persona(tmp_path, "ann", emotions={"proud": {"smile": 0.5}}, disclosure={"position": "top-left"})
    result = runner.invoke(app, ["personas", "show", "ann", "--root", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == "ann"
    assert shown["name"] == "Ann Example"
    assert shown["source"] == str(tmp_path / "personas" / "ann" / "face.png")
    assert shown["source_kind"] == "image"
    assert shown["emotions"] == {"proud": {"smile": 0.5}}
    assert shown["engine"] is None
    assert shown["consent"] == {
        "granted_by": "Test Person",
        "granted_on": "2024-05-01",
        "scope": "unit tests",
        "note": None,
    }
    assert shown["disclosure"] == {"label": True, "text": "AI-generated", "position": "top-left"}

    table = runner.invoke(app, ["personas", "show", "ann", "--root", str(tmp_path)])
    assert table.exit_code == 0
    assert "emotions.proud.smile" in table.stderr and "top-left" in table.stderr
    assert "not set (jobs without an engine use preview)" in " ".join(table.stderr.split())


def test_show_unknown_id_exit_2(tmp_path):
    make_persona(tmp_path, "ann")
    result = runner.invoke(app, ["personas", "show", "zoe", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert one_line(result.stderr) == f"error: {tmp_path / 'personas'}: unknown persona 'zoe'; known: ann"


def test_check_ok_warning_and_error(tmp_path):
    make_persona(tmp_path, "ann", media=())
    astronaut(tmp_path / "personas" / "ann" / "face.png")
    make_persona(tmp_path, "duo", media=())
    portrait = skimage.data.astronaut()
    write_image(tmp_path / "personas" / "duo" / "face.png", np.concatenate([portrait, portrait], axis=1))
    make_persona(tmp_path, "wall", media=())
    faceless(tmp_path / "personas" / "wall" / "face.png")
    root = ["--root", str(tmp_path)]

    ok = runner.invoke(app, ["personas", "check", "ann", "duo", *root, "--json"])
    assert ok.exit_code == 0, ok.output
    reports = json.loads(ok.stdout)
    assert [(r["id"], r["field"], r["ok"], r["max_faces"]) for r in reports["personas"]] == [
        ("ann", "source", True, 1),
        ("duo", "source", True, 2),
    ]
    assert reports["personas"][0]["problems"] == []
    assert [p["code"] for p in reports["personas"][1]["problems"]] == ["multiple_faces"]
    assert reports["errors"] == []

    every = runner.invoke(app, ["personas", "check", *root])
    assert every.exit_code == 2
    assert every.stderr.splitlines()[-1] == (
        f"{tmp_path / 'personas' / 'wall' / 'persona.yaml'}: source: no face found in the image: "
        f"{tmp_path / 'personas' / 'wall' / 'face.png'}"
    )
    assert "multiple_faces" not in every.stderr and "2 faces found" in every.stderr


def test_folder_names_match_the_spec():
    from cli import personas
    from pipelines.spec import loader, paths

    assert (personas.PERSONAS_DIR, personas.PERSONA_FILE) == (paths.PERSONAS_DIR, loader.PERSONA_FILE)
