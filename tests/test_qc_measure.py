"""QC on a rendered file: lip sync against the audio, closed mouth in silence, offset, sharpness, durations,
loudness, contact sheet; the render's subsample against every frame."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.expression.build import build_expression_track
from pipelines.qc.figures import av_offset, qc_figures, sharpness_figures
from pipelines.qc.sampling import FULL, QcSampler, Sampling, pause_hint, render_sampling
from pipelines.speech.levels import frame_levels_db
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


def test_statistics_use_the_even_sample_and_pauses_use_every_measured_frame():
    t = np.arange(400)
    speaking = (t % 100) < 70
    levels = np.where(speaking, -20.0 + 3 * np.sin(t / 2.0), -90.0)
    mouth = np.where(speaking, 0.3 + 0.1 * np.sin(t / 2.0), 0.02)
    sample = (t % 10) < 2
    pauses = ~speaking
    measured = sample | pauses
    fig = qc_figures(np.where(measured, mouth, np.nan), levels, 25.0, measured, sample=sample)
    full = qc_figures(mouth, levels, 25.0)
    assert fig["frames_measured"] == int(measured.sum())
    assert fig["pause_frames_checked"] == full["pause_frames_checked"] > 60
    assert fig["silent_closed_share"] == full["silent_closed_share"] == 1.0
    # the pauses' closed mouths, measured densely, do not drag the mean down
    assert fig["mouth_opening_mean"] == pytest.approx(full["mouth_opening_mean"], abs=0.03)
    assert fig["mouth_opening_mean"] > 0.2


def test_av_offset_finds_a_delayed_mouth():
    rng = np.random.default_rng(0)
    env = np.convolve(rng.normal(size=600), np.ones(5) / 5, mode="same") * 10 - 30
    mouth = np.full(600, np.nan)
    mouth[4:] = 0.2 + 0.01 * (env[:-4] + 30)  # the mouth shows the sound 4 frames (160 ms) late
    lag, r = av_offset(mouth, env, 25.0)
    assert lag == 4 and r > 0.99
    sampled = np.where(
        np.arange(600) % 16 < 2, mouth, np.nan
    )  # pairs of every 16: still one-frame resolution
    assert av_offset(sampled, env, 25.0)[0] == 4
    unrelated = 0.2 + 0.01 * rng.normal(size=600)
    assert av_offset(unrelated, env, 25.0)[0] is None  # no link, no offset
    fig = qc_figures(mouth, env, 25.0)
    assert fig["av_offset_ms"] == 160.0


def test_sharpness_end_ratio_catches_a_growing_smear():
    sharp = np.concatenate([np.full(100, 300.0), np.linspace(300, 60, 100)])
    fig = sharpness_figures(sharp)
    assert fig["face_sharpness_median"] == pytest.approx(300.0, rel=0.2)
    assert fig["face_sharpness_end_ratio"] < 0.4
    assert sharpness_figures(np.full(200, 120.0))["face_sharpness_end_ratio"] == 1.0


def test_render_sampling():
    assert render_sampling(60) == FULL  # short clips: every frame
    assert render_sampling(750) == Sampling(25, 2)
    assert render_sampling(200) == Sampling(6, 2)
    assert Sampling(16, 2).describe() == "2 of every 16 frames"


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
    from pipelines.media.audio import measure_loudness
    from pipelines.qc.measure import qc_file

    path, speech = rendered
    fig = qc_file(path)
    assert fig["frames"] == fig["frames_measured"] == speech.n_frames and fig["frames_without_face"] == 0
    assert fig["video_duration"] == pytest.approx(speech.duration, abs=1e-6)
    assert abs(fig["duration_difference"]) < 0.01
    assert fig["mouth_audio_correlation"] > 0.3
    assert fig["av_offset_ms"] == 0.0
    assert fig["silent_frames"] >= 10 and fig["silent_closed_share"] >= 0.8
    assert fig["face_sharpness_median"] > 10 and 0.7 < fig["face_sharpness_end_ratio"] < 1.4
    # the numpy meter against ffmpeg's loudnorm, the independent reference
    assert fig["loudness_lufs"] == pytest.approx(measure_loudness(path).integrated, abs=0.2)
    json.dumps(fig)  # goes into the job record as is


def test_sampled_as_during_a_render_and_resumed(rendered):
    """Frames offered as the render makes them (here from the second half on, as a resumed render does; the
    first half is decoded from the file), a subsample plus the pauses: close to every frame measured."""
    import av

    from pipelines.qc.measure import qc_file

    path, speech = rendered
    full = qc_file(path)
    n = speech.n_frames
    pauses = pause_hint(speech.samples, speech.sample_rate, FPS, n)
    sampler = QcSampler(n, FPS, Sampling(6, 2), also=pauses)
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= n // 2:
                sampler.offer(i, frame.to_ndarray(format="rgb24"))
    fig = sampler.finish(path)
    assert fig["frames"] == n and fig["frames_measured"] < 0.6 * n
    assert fig["pause_frames_checked"] == full["pause_frames_checked"]
    assert fig["silent_closed_share"] == full["silent_closed_share"]
    assert fig["mouth_audio_correlation"] == pytest.approx(full["mouth_audio_correlation"], abs=0.1)
    assert fig["mouth_opening_mean"] == pytest.approx(full["mouth_opening_mean"], abs=0.03)
    assert abs(fig["av_offset_ms"] - full["av_offset_ms"]) <= 40.0  # one frame
    assert len(sampler.tracks["mouth_opening"]) == len(sampler.tracks["measured_frames"])
    assert len(sampler.tracks["level_db"]) == n


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


def test_pause_hint_in_blocks_equals_the_whole_speech_at_once():
    """pause_hint meters the speech in 10 s blocks (flat memory); the pauses are those of one pass over it all."""
    from pipelines.qc.figures import pause_frames
    from pipelines.speech.levels import silent_frames

    rate, fps, seconds = 16000, 25.0, 25
    t = np.arange(seconds * rate) / rate
    samples = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.3 * t) > -0.3)).astype(np.float32)
    n = int(seconds * fps)
    levels, _ = frame_levels_db(samples, rate, fps, n)
    whole = frozenset(np.flatnonzero(pause_frames(silent_frames(levels), fps)).tolist())
    assert whole and pause_hint(samples, rate, fps, n) == whole
    assert pause_hint(samples, rate, fps, n, offset=7) == frozenset(i + 7 for i in whole)
