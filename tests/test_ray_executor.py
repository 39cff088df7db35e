"""`--executor ray` on a real local Ray cluster started by the test (2 CPUs, preview engine, tiny jobs)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.batch import run_batch
from cli.main import app
from pipelines.media.video_in import iter_frames
from tests.parallel_helpers import KillOnce
from tests.project_helpers import make_project, tone_wav

REPO = Path(__file__).resolve().parents[1]

JOB = """\
kind: summary
persona: test
seed: {seed}
audio: ../{audio}
output: {{size: [96, 96]}}
"""


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # The actors import this checkout's cli and pipelines, as an installed talkreel would be on a cluster's nodes.
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "TALKREEL_CACHE": os.environ["TALKREEL_CACHE"]}},
    )
    yield ray
    ray.shutdown()


def test_ray_actors_render_like_a_local_run_and_a_killed_actor_is_retried(ray_cluster, tmp_path, monkeypatch):
    tone_wav(tmp_path / "short.wav", 0.6)
    tone_wav(tmp_path / "long.wav", 16.0)  # 400 frames: killed at frame 30 or later
    jobs = make_project(
        tmp_path,
        {"a_long": JOB.format(seed=1, audio="long.wav"), "b": JOB.format(seed=2, audio="short.wav")},
        persona_size=160,
    )
    monkeypatch.chdir(tmp_path)
    reporter = KillOnce("a_long")
    result = run_batch([jobs], tmp_path / "ray", executor="ray", qc=False, reporter=reporter)

    assert reporter.killed
    assert result.exit_code == 0, result.as_dict()
    assert result.counts() == {"rendered": 2}
    # a_long started twice: on the actor that was killed, then on its restarted successor
    assert [stem for stem, _ in reporter.started].count("a_long") == 2
    assert {worker for _, worker in reporter.started}.isdisjoint({f"{os.uname().nodename}:{os.getpid()}"})

    local = CliRunner().invoke(app, ["render", str(jobs), "--out", "local", "--json", "--no-qc"])
    assert local.exit_code == 0, local.output
    local_report = json.loads(local.stdout)
    ray_report = result.as_dict()
    assert ray_report.keys() | {"dry_run"} == local_report.keys()
    assert [j.keys() for j in ray_report["jobs"]] == [j.keys() for j in local_report["jobs"]]
    for stem in ("a_long", "b"):
        on_ray, here = (
            list(iter_frames(tmp_path / "ray" / f"{stem}.mp4")),
            list(iter_frames(tmp_path / "local" / f"{stem}.mp4")),
        )
        assert len(on_ray) == len(here) > 0
        assert all(np.array_equal(a, b) for a, b in zip(on_ray, here, strict=True))
        record = json.loads((tmp_path / "ray" / f"{stem}.json").read_text())
        assert record["output"] == str(tmp_path / "ray" / f"{stem}.mp4")
    assert not list(
        (tmp_path / "ray" / ".talkreel").glob("a_long-*")
    )  # the killed actor's work folder is gone


def test_without_ray_the_error_names_the_extra(tmp_path, monkeypatch):
    jobs = make_project(tmp_path, {"b": JOB.format(seed=2, audio="short.wav")}, persona_size=160)
    tone_wav(tmp_path / "short.wav", 0.6)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["render", str(jobs), "--out", "out", "--executor", "ray", "--no-qc"])
    assert result.exit_code == 2, result.output
    assert "pip install 'talkreel[ray]'" in result.output
