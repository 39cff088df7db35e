"""The batch loader: files and folders, YAML problems, all errors of all files, one broken job among good ones."""

from __future__ import annotations

from pathlib import Path

from pipelines.spec import load_batch
from tests.spec_helpers import job_data, make_project, touch, write_yaml


def files_and_fields(batch) -> list[tuple[str, str | None, str]]:
    return [(Path(e.file).name, e.field, e.message) for e in batch.errors]


def test_folder_loads_every_yaml_directly_inside_sorted(tmp_path):
    make_project(tmp_path, {"c": job_data(), "a": job_data()})
    write_yaml(tmp_path / "jobs" / "b.yml", job_data())
    write_yaml(tmp_path / "jobs" / "nested" / "d.yaml", job_data())
    touch(tmp_path / "jobs" / "notes.txt")
    batch = load_batch([tmp_path / "jobs"])
    assert batch.errors == []
    assert [j.job_path.name for j in batch.jobs] == ["a.yaml", "b.yml", "c.yaml"]
    assert [j.job.output.path for j in batch.jobs] == [Path("a.mp4"), Path("b.mp4"), Path("c.mp4")]
    assert [p.id for p in batch.personas] == ["ann"]


def test_a_file_named_twice_loads_once(tmp_path):
    make_project(tmp_path)
    batch = load_batch([tmp_path / "jobs" / "a.yaml", tmp_path / "jobs"])
    assert len(batch.jobs) == 1 and batch.errors == []


def test_broken_jobs_do_not_stop_the_others(tmp_path):
    make_project(tmp_path, {"a": job_data(), "b": job_data(kind="poem"), "c": job_data(seed="x")})
    write_yaml(tmp_path / "jobs" / "d.yaml", "kind: [intro\n")
    write_yaml(tmp_path / "jobs" / "e.yaml", "")
    write_yaml(tmp_path / "jobs" / "f.yaml", "- kind: intro\n")
    batch = load_batch([tmp_path / "jobs"])
    assert [j.job_path.name for j in batch.jobs] == ["a.yaml"]
    assert files_and_fields(batch) == [
        ("b.yaml", "kind", "Input should be 'intro', 'summary' or 'faq', got 'poem'"),
        ("c.yaml", "seed", "Input should be a valid integer, unable to parse string as an integer, got 'x'"),
        (
            "d.yaml",
            None,
            "invalid YAML: line 2, column 1: did not find expected ',' or ']'",
        ),  # libyaml's words
        ("e.yaml", None, "empty file; expected a mapping of fields"),
        ("f.yaml", None, "expected a mapping of fields, got a list"),
    ]
    assert batch.errors[3].one_line().endswith("e.yaml: empty file; expected a mapping of fields")


def test_missing_path_and_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    batch = load_batch([tmp_path / "nope.yaml", tmp_path / "empty"])
    assert files_and_fields(batch) == [
        ("nope.yaml", None, "no such file or folder"),
        ("empty", None, "no *.yaml or *.yml files in this folder"),
    ]


def test_two_jobs_with_the_same_output(tmp_path):
    make_project(
        tmp_path, {"a": job_data(output={"path": "same.mp4"}), "b": job_data(output={"path": "same.mp4"})}
    )
    batch = load_batch([tmp_path / "jobs"])
    assert [j.job_path.name for j in batch.jobs] == ["a.yaml"]
    assert files_and_fields(batch) == [
        ("b.yaml", "output.path", f"same.mp4 is also the output of {tmp_path / 'jobs' / 'a.yaml'}")
    ]


def test_persona_file_in_a_batch_is_validated_as_a_persona(tmp_path):
    make_project(tmp_path, {})
    batch = load_batch([tmp_path / "personas" / "ann"])
    assert batch.jobs == [] and batch.errors == []
    assert [p.id for p in batch.personas] == ["ann"]
    assert batch.files == [tmp_path / "personas" / "ann" / "persona.yaml"]


def test_error_file_names_are_relative_to_the_working_folder(tmp_path, monkeypatch):
    make_project(tmp_path, {"a": job_data(kind="poem")})
    monkeypatch.chdir(tmp_path)
    batch = load_batch([Path("jobs")])
    assert (
        batch.errors[0].one_line()
        == "jobs/a.yaml: kind: Input should be 'intro', 'summary' or 'faq', got 'poem'"
    )


def test_theme_file_is_validated_with_the_job(tmp_path):
    touch(tmp_path / "brand" / "logo.png")
    write_yaml(tmp_path / "brand" / "theme.yaml", {"logo": "logo.png", "colours": {"accent": "#ff8800"}})
    write_yaml(tmp_path / "brand" / "empty.yaml", "")
    make_project(
        tmp_path, {"a": job_data(theme="../brand/theme.yaml"), "b": job_data(theme="../brand/empty.yaml")}
    )
    batch = load_batch([tmp_path / "jobs"])
    assert batch.errors == []
    a, b = batch.jobs
    assert a.theme.logo == tmp_path / "brand" / "logo.png"
    assert a.theme.colours.accent == "#ff8800"
    assert tmp_path / "brand" / "logo.png" in a.input_files()
    assert a.job.theme == tmp_path / "brand" / "theme.yaml"
    assert b.theme is not None and b.theme.logo is None


def test_broken_theme_reported_once_under_its_own_file(tmp_path):
    write_yaml(tmp_path / "brand" / "theme.yaml", {"logo": "gone.png", "colours": {"text": "red"}})
    make_project(
        tmp_path, {"a": job_data(theme="../brand/theme.yaml"), "b": job_data(theme="../brand/theme.yaml")}
    )
    batch = load_batch([tmp_path / "jobs"])
    assert batch.jobs == []
    theme = str(tmp_path / "brand" / "theme.yaml")
    assert files_and_fields(batch) == [
        (
            "theme.yaml",
            "colours.text",
            "String should match pattern '^#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$', got 'red'",
        ),
        ("theme.yaml", "logo", f"file not found: {tmp_path / 'brand' / 'gone.png'}"),
        ("a.yaml", "theme", f"theme {theme} has errors (listed above)"),
        ("b.yaml", "theme", f"theme {theme} has errors (listed above)"),
    ]
