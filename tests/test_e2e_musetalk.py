"""`talkreel render` with `engine: musetalk-1.5` end to end, for a photo and a video persona: tiny random weights
written in the hub formats and converted by pipelines.weights stand in for the downloaded ones (32 px faces);
everything else is the real path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.media.probe import probe
from pipelines.media.video_in import iter_frames
from tests.face_helpers import moving_portrait_frames, write_video
from tests.latentsync_helpers import one_torch_thread
from tests.musetalk_helpers import write_tiny_weights
from tests.project_helpers import PERSONA_YAML, make_project

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
    jobs = make_project(tmp_path, {"photo": JOB.format(persona="test"), "video": JOB.format(persona="clip")})
    for name in ("test", "clip"):
        folder = tmp_path / "personas" / name
        folder.mkdir(parents=True, exist_ok=True)
        yaml = PERSONA_YAML.replace("portrait.png", "clip.mp4") if name == "clip" else PERSONA_YAML
        (folder / "persona.yaml").write_text(yaml + "disclosure: {label: false}\n")
    write_video(tmp_path / "personas" / "clip" / "clip.mp4", moving_portrait_frames(20, size=256), fps=25)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TALKREEL_MUSETALK_RESOLUTION", "32")
    with one_torch_thread():
        yield jobs


def render(*args: str):
    return CliRunner().invoke(app, ["render", *args, "--json", "--no-qc"], catch_exceptions=False)


def test_missing_weights_exit_4_with_the_command(project, tmp_path, monkeypatch):
    monkeypatch.setenv("TALKREEL_WEIGHTS", str(tmp_path / "empty-weights"))
    result = render(str(project / "photo.yaml"), "--out", "out")
    assert result.exit_code == 4, result.output
    (job,) = json.loads(result.stdout)["jobs"]
    assert "talkreel weights download musetalk-1.5" in job["error"]


def test_render_photo_and_video_personas_with_tiny_weights(project, tmp_path, monkeypatch):
    monkeypatch.setenv("TALKREEL_WEIGHTS", str(tmp_path / "weights"))
    write_tiny_weights()
    first = render(str(project), "--out", "a")
    assert first.exit_code == 0, first.output
    for name in ("photo", "video"):
        record = json.loads((tmp_path / "a" / f"{name}.json").read_text())
        assert record["engine"]["name"] == "musetalk-1.5"
        weights = {w["role"]: w for w in record["engine"]["weights"]}
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
    a = list(iter_frames(tmp_path / "a" / "photo.mp4"))
    b = list(iter_frames(tmp_path / "b" / "photo.mp4"))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
