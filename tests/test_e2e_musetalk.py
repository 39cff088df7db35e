"""`talkreel render` with `engine: musetalk-1.5` end to end, for a photo and a video persona, with tiny weights
(32 px faces; tests/engine_e2e_helpers.py)."""

from __future__ import annotations

import json

import pytest

from pipelines.media.probe import probe
from tests.engine_e2e_helpers import (
    check_missing_weights,
    engine_project,
    first_render,
    render,
    same_frames,
    weights_by_role,
)
from tests.face_helpers import moving_portrait_frames, write_video
from tests.latentsync_helpers import one_torch_thread
from tests.musetalk_helpers import write_tiny_weights
from tests.project_helpers import PERSONA_YAML

JOB = """\
kind: summary
persona: {persona}
audio: {{text: "Hello there.", voice: en}}
emotion: [{{start: 0, emotion: happy, intensity: 0.5}}]
engine: {{name: musetalk-1.5, batch_size: 8}}
seed: 7
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    jobs = {"photo": JOB.format(persona="test"), "video": JOB.format(persona="clip")}
    folder = engine_project(tmp_path, monkeypatch, jobs, {"TALKREEL_MUSETALK_RESOLUTION": "32"})
    clip = tmp_path / "personas" / "clip"
    clip.mkdir(parents=True, exist_ok=True)
    (clip / "persona.yaml").write_text(
        PERSONA_YAML.replace("portrait.png", "clip.mp4") + "disclosure: {label: false}\n"
    )
    write_video(clip / "clip.mp4", moving_portrait_frames(20, size=256), fps=25)
    with one_torch_thread():
        yield folder


def test_missing_weights_exit_4_with_the_command(project, tmp_path, monkeypatch):
    check_missing_weights(project / "photo.yaml", tmp_path, monkeypatch, "musetalk-1.5")


def test_render_photo_and_video_personas_with_tiny_weights(project, tmp_path, monkeypatch):
    first_render(project, tmp_path, monkeypatch, write_tiny_weights, "musetalk-1.5", "photo")
    for name in ("photo", "video"):
        record = json.loads((tmp_path / "a" / f"{name}.json").read_text())
        assert record["engine"]["name"] == "musetalk-1.5"
        weights = weights_by_role(record)
        assert weights["unet"]["repo"] == "TMElyralab/MuseTalk"
        assert weights["unet"]["file"].endswith("musetalkV15/unet.safetensors")
        assert weights["whisper"]["repo"] == "openai/whisper-tiny"
        n = record["frames"]["clip"]
        assert n == record["frames"]["output"] == round(record["duration"]["speech"] * 25)
        info = probe(tmp_path / "a" / f"{name}.mp4")
        assert info.video_frames == n
        assert abs(info.audio_duration - n / 25) <= 1 / 25

    # the same inputs and seed give the same frames
    again = render(str(project / "photo.yaml"), "--out", "b")
    assert again.exit_code == 0, again.output
    assert same_frames(tmp_path / "a" / "photo.mp4", tmp_path / "b" / "photo.mp4")
