"""Mistakes that used to pass `validate` and fail (or go wrong) at render are caught at validate."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tests.project_helpers import PERSONA_YAML, make_project, tone_wav

TEXT_JOB = """\
kind: summary
persona: test
audio: {{text: "{text}", voice: {voice}}}
output: {{size: [128, 128]}}
"""
RECORDED_JOB = """\
kind: summary
persona: test
audio: ../take.wav
output: {size: [128, 128]}
"""


def validate(tmp_path: Path, *paths: str) -> dict:
    result = CliRunner().invoke(app, ["validate", *paths, "--json", "--no-faces"])
    out = json.loads(result.stdout)
    out["exit_code"] = result.exit_code
    return out


def errors_by_job(report: dict) -> dict[str, list[tuple[str | None, str]]]:
    found: dict[str, list[tuple[str | None, str]]] = {}
    for e in report["errors"]:
        found.setdefault(Path(e["file"]).stem, []).append((e["field"], e["message"]))
    return found


def test_text_voice_captions_and_chapters_are_checked_at_validate(tmp_path, monkeypatch):
    tone_wav(tmp_path / "take.wav", 1.0)
    make_project(
        tmp_path,
        {
            "blank": TEXT_JOB.format(text="   ", voice="en"),
            "voice": TEXT_JOB.format(text="Hello there.", voice="xx-nonsense"),
            "burn_in": RECORDED_JOB + "captions: {burn_in: true}\n",
            "burn_in_ok": RECORDED_JOB + "captions: {burn_in: true}\nscript: Hello there.\n",
            "chapter": RECORDED_JOB + "chapters: [{at: 5, text: Later}]\n",
        },
    )
    monkeypatch.chdir(tmp_path)
    report = validate(tmp_path, "jobs")
    assert report["exit_code"] == 2
    errors = errors_by_job(report)
    assert errors["blank"] == [("audio.text", "expected words to speak, got only whitespace")]
    ((field, message),) = errors["voice"]
    assert field == "audio.voice" and "unknown espeak-ng voice 'xx-nonsense'" in message
    ((field, message),) = errors["burn_in"]
    assert field == "captions.burn_in" and "add `script:`" in message
    assert errors["chapter"] == [("chapters.0.at", "5 s is not before the end of the audio (1.00 s)")]
    assert "burn_in_ok" not in errors


def test_persona_emotion_values_outside_their_range_are_refused(tmp_path, monkeypatch):
    make_project(tmp_path, {"one": TEXT_JOB.format(text="Hi.", voice="en")})
    persona = tmp_path / "personas" / "test" / "persona.yaml"
    persona.write_text(PERSONA_YAML + "emotions:\n  wide: {eye_open: 5, smile: 0.5}\n")
    monkeypatch.chdir(tmp_path)
    errors = errors_by_job(validate(tmp_path, "jobs"))
    assert ("emotions.wide.eye_open", "expected -1..1, got 5") in errors["persona"]


def test_a_tenth_of_a_second_of_audio_on_an_intro_renders(tmp_path, monkeypatch):
    tone_wav(tmp_path / "blip.wav", 0.1)
    jobs = make_project(
        tmp_path, {"short": RECORDED_JOB.replace("take.wav", "blip.wav").replace("summary", "intro")}
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["render", str(jobs), "--out", "out", "--no-qc", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "short.json").read_text())
    assert record["frames"]["clip"] == 2


def test_every_language_espeak_lists_is_a_voice_validate_accepts():
    from pipelines.speech.tts import available_voices, check_voice

    for language in ("en-gb", "fr-fr", *available_voices()):  # en-gb and fr-fr are only aliases in espeak
        check_voice(language)


def test_a_chapter_after_draft_speech_ends_is_caught_at_validate(tmp_path, monkeypatch):
    make_project(
        tmp_path,
        {"late": TEXT_JOB.format(text="Hello there.", voice="en") + "chapters: [{at: 30, text: X}]\n"},
    )
    monkeypatch.chdir(tmp_path)
    ((field, message),) = errors_by_job(validate(tmp_path, "jobs"))["late"]
    assert field == "chapters.0.at" and message.startswith("30 s is not before the end of the audio")
