"""Relative paths, the project root, the persona reference, and the outside-root rule."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.spec import load_batch
from pipelines.spec.audio import FileAudio
from pipelines.spec.paths import project_root
from tests.spec_helpers import errors_of, job_data, make_persona, make_project, touch, write_yaml


def outside_message(value: str, root: Path) -> str:
    return f"{value} is outside the project root {root.resolve()} (use --allow-outside-paths to allow it)"


def test_project_root_is_the_nearest_folder_with_personas(tmp_path):
    (tmp_path / "proj" / "personas").mkdir(parents=True)
    job = touch(tmp_path / "proj" / "jobs" / "deep" / "x.yaml")
    assert project_root(job) == (tmp_path / "proj").resolve()
    lone = touch(tmp_path / "elsewhere" / "y.yaml")
    assert project_root(lone) == (tmp_path / "elsewhere").resolve()


def test_job_in_a_nested_folder_finds_the_persona_by_id(tmp_path):
    make_project(tmp_path, {})
    write_yaml(tmp_path / "jobs" / "deep" / "x.yaml", job_data(audio="../../audio/take.wav"))
    batch = load_batch([tmp_path / "jobs" / "deep" / "x.yaml"])
    assert batch.errors == []
    assert batch.jobs[0].persona_id == "ann"


def test_persona_by_folder_path_and_by_file_path(tmp_path):
    make_project(tmp_path, {})
    other = make_persona(tmp_path, "bob")
    other.rename(other.with_name("bob.yaml"))
    write_yaml(tmp_path / "jobs" / "a.yaml", job_data(persona="../personas/ann/"))
    write_yaml(tmp_path / "jobs" / "b.yaml", job_data(persona="../personas/bob/bob.yaml"))
    batch = load_batch([tmp_path / "jobs"])
    assert batch.errors == []
    assert [j.persona_file.name for j in batch.jobs] == ["persona.yaml", "bob.yaml"]
    assert [j.persona_id for j in batch.jobs] == ["ann", "bob"]


def test_unknown_persona_id_lists_the_known_ones(tmp_path):
    make_project(tmp_path, {"a": job_data(persona="zoe")})
    make_persona(tmp_path, "bob")
    batch = load_batch([tmp_path / "jobs" / "a.yaml"])
    missing = tmp_path / "personas" / "zoe" / "persona.yaml"
    assert errors_of(batch) == [("persona", f"unknown persona 'zoe': no {missing}; known: ann, bob")]


def test_persona_path_missing_and_folder_without_persona_yaml(tmp_path):
    make_project(tmp_path, {"a": job_data(persona="../people/zoe.yaml"), "b": job_data(persona="../audio/")})
    batch = load_batch([tmp_path / "jobs"])
    assert errors_of(batch) == [
        ("persona", f"file not found: {tmp_path / 'people' / 'zoe.yaml'}"),
        ("persona", f"file not found: {tmp_path / 'audio' / 'persona.yaml'}"),
    ]


def test_paths_outside_the_project_root_are_refused_unless_allowed(tmp_path):
    project = tmp_path / "proj"
    touch(tmp_path / "shared" / "talk.wav")
    make_project(project, {"a": job_data(audio="../../shared/talk.wav")})
    batch = load_batch([project / "jobs" / "a.yaml"])
    assert batch.jobs == []
    assert errors_of(batch) == [("audio.file", outside_message("../../shared/talk.wav", project))]
    assert batch.errors[0].file == str(project / "jobs" / "a.yaml")

    batch = load_batch([project / "jobs" / "a.yaml"], allow_outside_paths=True)
    assert batch.errors == []
    assert batch.jobs[0].job.audio == FileAudio(file=tmp_path / "shared" / "talk.wav")


def test_absolute_path_inside_the_root_is_fine_and_symlink_escape_is_refused(tmp_path):
    project = tmp_path / "proj"
    make_project(
        project, {"a": job_data(audio=str(project / "audio" / "take.wav")), "b": job_data(audio="link.wav")}
    )
    touch(tmp_path / "secret.wav")
    os.symlink(tmp_path / "secret.wav", project / "jobs" / "link.wav")
    batch = load_batch([project / "jobs"])
    assert [j.job_path.name for j in batch.jobs] == ["a.yaml"]
    assert errors_of(batch) == [("audio.file", outside_message("link.wav", project))]


def test_persona_outside_the_root_and_its_source_outside_the_root(tmp_path):
    project = tmp_path / "proj"
    make_project(project, {"a": job_data(persona="../../other/personas/eve")})
    make_persona(tmp_path / "other", "eve")
    batch = load_batch([project / "jobs" / "a.yaml"])
    assert errors_of(batch) == [("persona", outside_message("../../other/personas/eve", project))]

    make_persona(project, "ann", source="../../../outside.png", media=())
    touch(tmp_path / "outside.png")
    write_yaml(project / "jobs" / "a.yaml", job_data())
    batch = load_batch([project / "jobs" / "a.yaml"])
    assert [(e.file, e.field, e.message) for e in batch.errors] == [
        (
            str(project / "personas" / "ann" / "persona.yaml"),
            "source",
            outside_message("../../../outside.png", project),
        ),
        (str(project / "jobs" / "a.yaml"), "persona", "persona 'ann' has errors (listed above)"),
    ]
    assert load_batch([project / "jobs" / "a.yaml"], allow_outside_paths=True).errors == []


def test_output_path_outside_the_out_folder_needs_the_flag(tmp_path):
    make_project(tmp_path, {"a": job_data(output={"path": str(tmp_path / "x.mp4")})})
    batch = load_batch([tmp_path / "jobs" / "a.yaml"])
    assert errors_of(batch) == [
        (
            "output.path",
            f"{tmp_path / 'x.mp4'} leaves the output folder; use a relative path without '..' (or --allow-outside-paths)",
        )
    ]
    batch = load_batch([tmp_path / "jobs" / "a.yaml"], allow_outside_paths=True)
    assert batch.jobs[0].job.output.path == tmp_path / "x.mp4"


def test_symlinked_persona_folder_keeps_its_own_id(tmp_path):
    make_project(tmp_path, {"a": job_data(persona="alias")})
    os.symlink(tmp_path / "personas" / "ann", tmp_path / "personas" / "alias")
    batch = load_batch([tmp_path / "jobs" / "a.yaml"])
    assert batch.errors == []
    assert batch.jobs[0].persona_id == "alias"
    assert batch.jobs[0].persona.source == tmp_path / "personas" / "alias" / "face.png"
