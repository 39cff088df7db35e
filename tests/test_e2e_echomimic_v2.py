"""`talkreel render` with `engine: echomimic-v2-acc` end to end with tiny weights (tests/engine_e2e_helpers.py)."""

from __future__ import annotations

from functools import partial

import pytest

from pipelines.media.probe import probe
from tests.echomimic_v2_helpers import write_tiny_weights
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
audio: {text: "Hello there.", voice: en}
engine: {name: echomimic-v2-acc, steps: 2}
seed: 7
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    # tiny weights at 64 px: seconds on a CPU
    with one_torch_thread():
        yield engine_project(tmp_path, monkeypatch, {"emv2": JOB}, {"TALKREEL_ECHOMIMIC_V2_RESOLUTION": "64"})


def test_missing_weights_exit_4_with_the_command(project, tmp_path, monkeypatch):
    check_missing_weights(project, tmp_path, monkeypatch, "echomimic-v2-acc")


def test_render_with_tiny_weights(project, tmp_path, monkeypatch):
    write = partial(write_tiny_weights, "echomimic-v2-acc")
    record = first_render(project, tmp_path, monkeypatch, write, "echomimic-v2-acc", "emv2")
    weights = weights_by_role(record)
    assert weights["denoising_unet"]["file"].endswith("denoising_unet_acc.safetensors")
    assert weights["motion_module"]["file"].endswith("motion_module_acc.safetensors")
    n = record["frames"]["clip"]
    assert n == round(record["duration"]["speech"] * 25)
    info = probe(tmp_path / "a" / "emv2.mp4")
    assert info.video_frames == n and (info.width, info.height) == (64, 64)
    assert render(str(project), "--out", "b").exit_code == 0
    assert same_frames(tmp_path / "a" / "emv2.mp4", tmp_path / "b" / "emv2.mp4")
