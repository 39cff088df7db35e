"""`talkreel render` with `engine: latentsync-1.6` end to end with tiny weights (tests/engine_e2e_helpers.py)."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

from pipelines.media.probe import probe
from pipelines.media.video_in import iter_frames
from tests.engine_e2e_helpers import (
    check_missing_weights,
    engine_project,
    first_render,
    render,
    same_frames,
    weights_by_role,
)
from tests.latentsync_helpers import one_torch_thread, write_tiny_weights
from tests.project_helpers import portrait

JOB = """\
kind: summary
persona: test
audio: {text: "Hello there.", voice: en}
emotion: [{start: 0, emotion: happy, intensity: 0.5}]
engine: {name: latentsync-1.6, steps: 2}
seed: 7
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    # 64 px faces: the real 512 px crop costs minutes per frame on a CPU.
    with one_torch_thread():
        yield engine_project(tmp_path, monkeypatch, {"ls": JOB}, {"TALKREEL_LATENTSYNC_RESOLUTION": "64"})


def test_missing_weights_exit_4_with_the_command(project, tmp_path, monkeypatch):
    check_missing_weights(project, tmp_path, monkeypatch, "latentsync-1.6")


def test_render_with_tiny_weights(project, tmp_path, monkeypatch):
    write = partial(write_tiny_weights, "latentsync-1.6")
    record = first_render(project, tmp_path, monkeypatch, write, "latentsync-1.6", "ls")
    weights = weights_by_role(record)
    assert weights["unet"]["repo"] == "ByteDance/LatentSync-1.6"
    assert weights["unet"]["file"].endswith("latentsync_unet.safetensors")
    assert (
        weights["unet"]["revision"] is None
    )  # no weights.lock here: the record says the weights are unpinned
    n = record["frames"]["clip"]
    assert n == record["frames"]["output"] == round(record["duration"]["speech"] * 25)
    info = probe(tmp_path / "a" / "ls.mp4")
    assert info.video_frames == n
    assert abs(info.video_duration - n / 25) < 1e-3
    assert abs(info.audio_duration - n / 25) <= 1 / 25

    # Same inputs and seed -> the same frames.
    assert render(str(project), "--out", "b").exit_code == 0
    assert same_frames(tmp_path / "a" / "ls.mp4", tmp_path / "b" / "ls.mp4")
    a = list(iter_frames(tmp_path / "a" / "ls.mp4"))

    # Away from the face the persona's pixels come through (H.264 and the invisible watermark aside),
    # while the regenerated mouth region differs from the source.
    source = portrait(256).astype(np.int16)
    frame = a[len(a) // 2].astype(np.int16)
    assert frame.shape == source.shape
    outside = np.ones(source.shape[:2], bool)
    outside[10:135, 60:165] = False  # the face (pupils near y=50, chin near y=90) and the feathered margin
    assert np.abs(frame - source)[outside].mean() < 4.0
    mouth = (slice(64, 84), slice(98, 128))
    assert np.abs(frame - source)[mouth].mean() > 4.0

    # --low-vram: recorded in the job's engine settings (so the content hash, and with it the invisible watermark's
    # payload, differs: frames are compared with the normal path's in tests/test_latentsync_engine.py)
    low = render(str(project), "--out", "c", "--low-vram")
    assert low.exit_code == 0, low.output
    low_record = json.loads((tmp_path / "c" / "ls.json").read_text())
    assert low_record["engine"]["settings"]["low_vram"] is True
    assert record["engine"]["settings"]["low_vram"] is False
    assert low_record["engine"]["offload_idle_modules"] is True
    assert low_record["content_hash"] != record["content_hash"]
    c = list(iter_frames(tmp_path / "c" / "ls.mp4"))
    assert len(c) == len(a)
    assert np.abs(c[len(c) // 2].astype(np.int16) - source)[outside].mean() < 4.0
