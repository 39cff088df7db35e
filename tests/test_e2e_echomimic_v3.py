"""`talkreel render` with the EchoMimic V3 engines end to end with tiny weights (tests/engine_e2e_helpers.py)."""

from __future__ import annotations

import json
from functools import partial

import pytest

from pipelines.media.probe import probe
from tests.echomimic_v3_helpers import write_tiny_weights
from tests.engine_e2e_helpers import (
    check_missing_weights,
    engine_project,
    first_render,
    render,
    same_frames,
    weights_by_role,
)
from tests.latentsync_helpers import one_torch_thread

JOB = """\
kind: summary
persona: test
audio: {{text: "Hello there, friends.", voice: en}}
emotion: [{{start: 0, emotion: happy, intensity: 1.0}}]
engine: {{name: {engine}, steps: 2, chunk_frames: 13, overlap: 4}}
output: {{size: [64, 64]}}
seed: 7
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    jobs = {"em": JOB.format(engine="echomimic-v3-flash")}
    with one_torch_thread():
        yield engine_project(tmp_path, monkeypatch, jobs, {"TALKREEL_CACHE": str(tmp_path / "cache")})


def test_missing_weights_exit_4_with_the_command(project, tmp_path, monkeypatch):
    check_missing_weights(project, tmp_path, monkeypatch, "echomimic-v3-flash")


def test_render_with_tiny_weights_is_deterministic(project, tmp_path, monkeypatch):
    write = partial(write_tiny_weights, "echomimic-v3-flash")
    record = first_render(project, tmp_path, monkeypatch, write, "echomimic-v3-flash", "em")
    weights = weights_by_role(record)
    assert weights["transformer"]["repo"] == "BadToBest/EchoMimicV3"
    n = record["frames"]["clip"]
    assert n == round(record["duration"]["speech"] * 25)
    info = probe(tmp_path / "a" / "em.mp4")
    assert info.video_frames == n and (info.width, info.height) == (64, 64)
    # the prompt cache holds the one chunk prompt (flash has no negative prompt)
    assert len(list((tmp_path / "cache" / "echomimic-v3-prompts").glob("*.safetensors"))) == 1

    assert render(str(project), "--out", "b").exit_code == 0
    assert same_frames(tmp_path / "a" / "em.mp4", tmp_path / "b" / "em.mp4")

    # --low-vram reaches the engine (its frames equal the plain mode's: tests/test_echomimic_v3_engine.py)
    low = render(str(project), "--out", "c", "--low-vram")
    assert low.exit_code == 0, low.output
    low_record = json.loads((tmp_path / "c" / "em.json").read_text())
    assert (
        low_record["engine"]["settings"]["low_vram"] is True
        and record["engine"]["settings"]["low_vram"] is False
    )
    assert (
        low_record["engine"]["offload_idle_modules"] is True
        and record["engine"]["offload_idle_modules"] is False
    )
