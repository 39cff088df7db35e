"""QC on a rendered file: lip sync against the audio, closed mouth in silence, durations, loudness, contact sheet."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.expression.build import build_expression_track
from pipelines.qc.measure import frame_levels_db, qc_figures
from tests.preview_helpers import FPS, SIZE, prepared, settings, tts_speech


def test_figures_from_curves():
    t = np.arange(200)
    speaking = (t > 50) & (t < 150)
    levels = np.where(speaking, -20.0 + 3 * np.sin(t / 3.0), -90.0)
    mouth = np.where(speaking, 0.25 + 0.05 * np.sin(t / 3.0), 0.1)
    mouth[10] = np.nan  # a frame without a face
    fig = qc_figures(mouth, levels)
    assert fig["frames"] == 200 and fig["frames_without_face"] == 1
    assert fig["mouth_audio_correlation"] > 0.9
    assert fig["silent_frames"] == 101 and fig["silent_closed_share"] == 1.0
    frozen = qc_figures(np.full(200, 0.3), levels)
    assert frozen["mouth_audio_correlation"] is None  # a frozen mouth has no correlation to report
    open_in_silence = qc_figures(np.where(speaking, 0.1, 0.4), levels)
    assert open_in_silence["silent_closed_share"] == 0.0


def test_frame_levels():
    sr = 16000
    samples = np.concatenate([np.zeros(sr), 0.5 * np.ones(sr)]).astype(np.float32)
    levels, seen = frame_levels_db(samples, sr, 25.0, 50)
    assert seen == 2 * sr
    assert levels[:25].max() < -100 and levels[25:] == pytest.approx(20 * np.log10(0.5), abs=0.01)
    # Streamed in uneven blocks (as qc_file decodes the file) the levels are the same.
    blocks = np.split(samples, [1000, 7777, 20000])
    streamed, _ = frame_levels_db(iter(blocks), sr, 25.0, 50)
    np.testing.assert_allclose(streamed, levels)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A short preview render of TTS speech, encoded with its audio like a finished job."""
    from pipelines.engines.preview.engine import PreviewEngine
    from pipelines.media.video_out import encode_final

    tmp = tmp_path_factory.mktemp("qc")
    speech = tts_speech()
    expression = build_expression_track([(0, None, "happy", 0.5)], speech.n_frames, FPS, 0)
    frames = (f.image for f in PreviewEngine().render(prepared(), speech, expression, settings()))
    wav = tmp / "speech.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(speech.sample_rate)
        w.writeframes((np.clip(speech.samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return encode_final(frames, speech.n_frames, FPS, SIZE, wav, tmp / "clip.mp4"), speech


def test_qc_of_a_rendered_file(rendered):
    from pipelines.qc.measure import qc_file

    path, speech = rendered
    fig = qc_file(path)
    assert fig["frames"] == speech.n_frames and fig["frames_without_face"] == 0
    assert fig["video_duration"] == pytest.approx(speech.duration, abs=1e-6)
    assert abs(fig["duration_difference"]) < 0.01
    assert fig["mouth_audio_correlation"] > 0.3
    assert fig["silent_frames"] >= 10 and fig["silent_closed_share"] >= 0.8
    assert -40 < fig["loudness_lufs"] < 0
    json.dumps(fig)  # goes into the job record as is


def test_qc_command_and_contact_sheet(rendered, tmp_path):
    import cv2

    path, _ = rendered
    sheet = tmp_path / "clip.contact.png"
    result = CliRunner().invoke(app, ["qc", str(path), "--json", "--sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    fig = json.loads(result.stdout)
    assert fig["contact_sheet"] == str(sheet) and fig["frames_without_face"] == 0
    image = cv2.imread(str(sheet))
    assert image.shape == (4 * 256, 4 * 256, 3)  # 16 frames of 256x256 in rows of 4


def test_qc_of_a_missing_file_is_an_input_error(tmp_path):
    result = CliRunner().invoke(app, ["qc", str(tmp_path / "nope.mp4")])
    assert result.exit_code == 2 and "file not found" in result.output
