"""Silent surprises, said or done right: dry-run estimates, QC counts, encoder presets, glyphs, loops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.project_helpers import make_project, tone_wav

INTRO = """\
kind: intro
persona: test
audio: ../take.wav
title: {text: Welcome, duration: 2}
closing: {text: Bye, duration: 1}
output: {size: [192, 192]}
"""


def test_dry_run_counts_the_cards_and_qc_does_not_count_them_as_faceless(tmp_path, monkeypatch):
    tone_wav(tmp_path / "take.wav", 2.0)
    jobs = make_project(tmp_path, {"intro": INTRO})
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    dry = runner.invoke(app, ["render", str(jobs), "--out", "out", "--dry-run", "--json"])
    (planned,) = json.loads(dry.stdout)["jobs"]
    assert runner.invoke(app, ["render", str(jobs), "--out", "out", "--quiet"]).exit_code == 0
    record = json.loads((tmp_path / "out" / "intro.json").read_text())
    assert planned["frames"] == record["frames"]["output"] == 50 + 50 + 25
    first = record["composition"]["clip"]["first_frame"]
    assert any(i < first for i in record["qc_tracks"]["measured_frames"])  # card frames were measured
    assert record["qc"]["frames_without_face"] == 0


def test_cjk_text_is_drawn_with_a_fallback_font_that_has_its_glyphs():
    from pipelines.compose.fonts import default_font_path, fallback_fonts, load_font, missing_glyphs
    from pipelines.compose.text import TextStyle, style_for

    text = "你好世界 こんにちは 안녕하세요"
    assert missing_glyphs(text, default_font_path()) == "" or not fallback_fonts()
    if not fallback_fonts():
        pytest.skip("no CJK fallback font installed (CI installs fonts-droid-fallback)")
    style = TextStyle(load_font(None, 24), (255, 255, 255, 255))
    chosen = style_for(text, style)
    assert Path(chosen.font.path) == fallback_fonts()[0]
    assert style_for("plain English", style) is style  # Latin text keeps the theme's font


def test_without_a_cjk_font_the_label_stays_legible_and_validate_warns(tmp_path, monkeypatch):
    import pipelines.compose.fonts as fonts

    monkeypatch.setattr(fonts, "FALLBACK_FONTS", ())
    jobs = make_project(
        tmp_path, {"cjk": INTRO.replace("Welcome", "欢迎").replace("../take.wav", "{text: Hi}")}
    )
    persona = tmp_path / "personas" / "test" / "persona.yaml"
    persona.write_text(persona.read_text() + "disclosure: {text: AI生成}\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate", str(jobs), "--json", "--no-faces"])
    warnings = {
        (Path(w["file"]).name, w["field"]): w["message"] for w in json.loads(result.stdout)["warnings"]
    }
    assert "欢迎" in warnings[("cjk.yaml", "title.text")]
    assert "shown as 'AI-generated'" in warnings[("persona.yaml", "disclosure.text")]

    from pipelines.provenance.label import resolve_label
    from pipelines.spec.compose import Theme
    from pipelines.spec.loader import load_persona

    label = resolve_label(load_persona(persona).disclosure, Theme())
    assert label.text == "AI-generated" and "生成" in label.note


def test_a_preview_render_encodes_with_the_documented_preset(tmp_path, monkeypatch):
    from pipelines.spec.job import Output

    assert "veryfast for the preview engine" in Output.model_fields["preset"].description
    jobs = make_project(tmp_path, {"one": INTRO.replace("../take.wav", "{text: Hi there.}")})
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["render", str(jobs), "--out", "out", "--quiet", "--no-qc"]).exit_code == 0
    record = json.loads((tmp_path / "out" / "one.json").read_text())
    assert record["encoding"] == {
        "codec": "h264",
        "crf": 18,
        "preset": "veryfast",
        "x264_params": "me=dia:subme=1:partitions=i8x8,i4x4",
    }


SCRIPT = "Good morning to you all, and welcome to the weekly summary."


def _spoken_wav(path, text: str, voice: str):
    import wave

    import numpy as np

    from pipelines.speech.tts import synthesize

    speech = synthesize(text, voice=voice)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(speech.sample_rate)
        w.writeframes((np.clip(speech.samples, -1, 1) * 32767).astype("<i2").tobytes())
    return speech


def test_a_script_that_matches_its_recording_aligns_without_a_warning():
    from pipelines.speech.align import script_alignment
    from pipelines.speech.tts import synthesize

    spoken = synthesize(SCRIPT, voice="en-us", rate_wpm=120)  # another voice, slower
    found = script_alignment(spoken.samples, spoken.sample_rate, SCRIPT)
    assert not found.poor and found.warning() is None


def test_a_script_that_is_not_what_was_said_is_reported(tmp_path, monkeypatch):
    other = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs."
    _spoken_wav(tmp_path / "take.wav", other, "en-us")
    job = INTRO.replace("kind: intro", "kind: summary").replace("title: {text: Welcome, duration: 2}\n", "")
    jobs = make_project(
        tmp_path, {"one": job.replace("closing: {text: Bye, duration: 1}\n", "") + f"script: {SCRIPT}\n"}
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["render", str(jobs), "--out", "out", "--json", "--no-qc"])
    assert result.exit_code == 0, result.output
    (outcome,) = json.loads(result.stdout)["jobs"]
    assert any("does not seem to match the recording" in w for w in outcome["warnings"])
    record = json.loads((tmp_path / "out" / "one.json").read_text())
    assert record["warnings"] == outcome["warnings"]


def test_loop_frame_modes():
    from pipelines.engines.base import loop_frame

    assert [loop_frame(i, 3, "repeat") for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert [loop_frame(i, 3, "hold") for i in range(5)] == [0, 1, 2, 2, 2]
    assert [loop_frame(i, 3, "pingpong") for i in range(6)] == [0, 1, 2, 1, 0, 1]
    assert [loop_frame(i, 4, "pingpong") for i in range(10)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert [loop_frame(i, 3, "pingpong", ends_twice=True) for i in range(9)] == [0, 1, 2, 2, 1, 0, 0, 1, 2]
    assert [loop_frame(i, 3, "repeat", ends_twice=True) for i in range(4)] == [0, 1, 2, 0]
    assert {
        loop_frame(i, n, mode) for i in range(5) for n in (0, 1) for mode in ("pingpong", "repeat", "hold")
    } == {0}


def test_a_video_persona_shorter_than_the_speech_loops_as_the_persona_says(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from pipelines.media.ffmpeg import run_ffmpeg
    from pipelines.media.video_in import iter_frames
    from tests.project_helpers import portrait

    job = (
        "kind: summary\npersona: test\naudio: {segments: [{pause: 2.0}]}\nengine: {name: preview, idle: 0}\n"
    )
    jobs = make_project(tmp_path, {"v": job})
    persona = tmp_path / "personas" / "test"
    Image.fromarray(portrait(320)).save(tmp_path / "big.png")
    run_ffmpeg(
        ["-loop", "1", "-framerate", "25", "-t", "1", "-i", str(tmp_path / "big.png")]
        + [
            "-vf",
            "crop=256:256:2*n:32",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-y",
            str(persona / "clip.mp4"),
        ],
        what="test persona video",
    )
    text = (persona / "persona.yaml").read_text().replace("portrait.png", "clip.mp4")
    monkeypatch.chdir(tmp_path)
    frames = {}
    for mode in ("hold", "repeat"):
        (persona / "persona.yaml").write_text(text + f"loop: {mode}\n")
        result = CliRunner().invoke(app, ["render", str(jobs), "--out", mode, "--json", "--no-qc"])
        assert result.exit_code == 0, result.output
        (outcome,) = json.loads(result.stdout)["jobs"]
        assert any("shorter than the speech" in w for w in outcome["warnings"]), outcome
        record = json.loads((tmp_path / mode / "v.json").read_text())
        assert record["persona"]["loop"] == {"mode": mode, "source_seconds": 1.0, "looped": True}
        frames[mode] = [f.astype(float) for f in iter_frames(tmp_path / mode / "v.mp4")]

    def diff(a, b):
        return float(np.abs(a - b).mean())

    hold, repeat = frames["hold"], frames["repeat"]
    # the same source frame differs only by the mouth and the encode (~0.2 held, ~1-2 repeated, which varies from
    # run to run with the encoder's settings), another source frame by ~70
    assert diff(hold[45], hold[24]) < 8.0 < diff(hold[45], hold[5])  # the last source frame, held
    assert diff(repeat[30], repeat[5]) < 8.0 < diff(repeat[30], repeat[20])  # the source from its start


def _two_faces(path):
    import numpy as np
    from PIL import Image

    from tests.project_helpers import portrait

    canvas = np.full((256, 512, 3), 200, np.uint8)
    canvas[:, :256] = portrait(256)
    canvas[40:240, 296:496] = portrait(200)[:, ::-1]  # a smaller, mirrored second face on the right
    Image.fromarray(canvas).save(path)


def test_a_persona_picks_which_face_of_a_group_photo(tmp_path, monkeypatch):
    import numpy as np

    from pipelines.media.video_in import iter_frames

    job = "kind: summary\npersona: test\naudio: {text: Hi there.}\noutput: {size: [128, 128]}\n"
    jobs = make_project(tmp_path, {"one": job})
    persona = tmp_path / "personas" / "test"
    _two_faces(persona / "portrait.png")
    text = (persona / "persona.yaml").read_text()
    monkeypatch.chdir(tmp_path)

    (persona / "persona.yaml").write_text(text + "face: {index: 5}\n")
    result = CliRunner().invoke(app, ["validate", str(jobs), "--json"])
    assert result.exit_code == 2
    errors = json.loads(result.stdout)["errors"]
    assert any(e["field"] == "face" and "shows 2 face(s)" in e["message"] for e in errors), errors

    firsts = {}
    for name, pick in {
        "largest": "",
        "second": "face: {index: 1}\n",
        "point": "face: {x: 0.8, y: 0.5}\n",
    }.items():
        (persona / "persona.yaml").write_text(text + pick)
        assert (
            CliRunner().invoke(app, ["render", str(jobs), "--out", name, "--quiet", "--no-qc"]).exit_code == 0
        )
        firsts[name] = next(iter(iter_frames(tmp_path / name / "one.mp4"))).astype(float)
    assert np.abs(firsts["second"] - firsts["point"]).mean() < 1.0  # the same face, chosen two ways
    assert np.abs(firsts["second"] - firsts["largest"]).mean() > 10.0


def test_the_label_never_splits_a_word_on_a_small_frame():
    from pipelines.compose.fonts import load_font
    from pipelines.provenance.label import LabelSpec, label_overlay
    from pipelines.spec.compose import Theme

    overlay = label_overlay(LabelSpec("AI-generated", "bottom-right"), (128, 128), Theme())
    text_width = load_font(None, 12, bold=True).getlength("AI-generated")
    assert overlay.rgba.shape[1] > text_width  # one line: the panel is wider than the whole word
    assert overlay.rgba.shape[0] < 2 * 12 * 1.25  # and not two lines tall
