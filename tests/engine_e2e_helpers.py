"""What the model engines' end-to-end tests share: a project of jobs through `talkreel render` with tiny weights
(tiny random weights written in the hub formats and converted by pipelines.weights stand in for the downloaded
ones; everything else is the real path).

@pytest.fixture
def project(tmp_path, monkeypatch):
    with one_torch_thread():
        yield engine_project(tmp_path, monkeypatch, {"ls": JOB}, {"TALKREEL_LATENTSYNC_RESOLUTION": "64"})

def test_missing_weights_exit_4_with_the_command(project, tmp_path, monkeypatch):
    check_missing_weights(project, tmp_path, monkeypatch, "latentsync-1.6")
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cli.main import app
from pipelines.media.video_in import iter_frames
from tests.project_helpers import make_project


def engine_project(
    tmp_path: Path, monkeypatch, jobs: dict[str, str], env: dict[str, str] | None = None
) -> Path:
    """make_project's jobs folder, the persona's visible label off (the pixels around the face can then be compared
    with the persona's own), the current folder the project's, and `env` set (e.g. an engine's tiny resolution)."""
    folder = make_project(tmp_path, jobs)
    persona = tmp_path / "personas" / "test" / "persona.yaml"
    persona.write_text(persona.read_text() + "disclosure: {label: false}\n")
    monkeypatch.chdir(tmp_path)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    return folder


def render(*args: str):
    """`talkreel render ARGS --json --no-qc` through the real CLI."""
    return CliRunner().invoke(app, ["render", *args, "--json", "--no-qc"], catch_exceptions=False)


def check_missing_weights(jobs: Path, tmp_path: Path, monkeypatch, engine_id: str) -> None:
    """Without weights the job fails with exit 4 and its error names the download command."""
    monkeypatch.setenv("TALKREEL_WEIGHTS", str(tmp_path / "empty-weights"))
    result = render(str(jobs), "--out", "out")
    assert result.exit_code == 4, result.output
    (job,) = json.loads(result.stdout)["jobs"]
    assert f"talkreel weights download {engine_id}" in job["error"]


def first_render(jobs: Path, tmp_path: Path, monkeypatch, write_weights, engine_id: str, stem: str) -> dict:
    """Tiny weights written by `write_weights()` into a fresh TALKREEL_WEIGHTS, the jobs rendered into out folder
    "a" (exit 0): the record of job `stem`, which names `engine_id`."""
    monkeypatch.setenv("TALKREEL_WEIGHTS", str(tmp_path / "weights"))
    write_weights()
    result = render(str(jobs), "--out", "a")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "a" / f"{stem}.json").read_text())
    assert record["engine"]["name"] == engine_id
    return record


def weights_by_role(record: dict) -> dict[str, dict]:
    """The job record's weight files, by role."""
    return {w["role"]: w for w in record["engine"]["weights"]}


def same_frames(a: Path, b: Path) -> bool:
    """Whether two videos decode to the same frames, pixel for pixel."""
    x, y = list(iter_frames(a)), list(iter_frames(b))
    return len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y, strict=True))
