"""Job files: every accepted form, and every error message (field path + text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.engines.base import engine_names
from pipelines.spec import Job, load_batch
from pipelines.spec.audio import FileAudio, FileSegment, PauseSegment, SegmentsAudio, TextAudio
from pipelines.spec.engines import ENGINE_NAMES, LatentSyncSettings, PreviewSettings, engine_settings
from tests.spec_helpers import errors_of, job_data, make_project, touch

BUILTIN = "angry, happy, neutral, sad, surprised, thinking"


def load_one(tmp_path: Path, allow_outside_paths: bool = False, persona: dict | None = None, **job):
    make_project(tmp_path, {"a": job_data(**job)}, **(persona or {}))
    return load_batch([tmp_path / "jobs" / "a.yaml"], allow_outside_paths=allow_outside_paths)


def the_job(tmp_path: Path, **kwargs) -> Job:
    batch = load_one(tmp_path, **kwargs)
    assert batch.errors == [], [e.one_line() for e in batch.errors]
    assert len(batch.jobs) == 1
    return batch.jobs[0].job


def test_minimal_job_gets_defaults_and_resolved_paths(tmp_path):
    batch = load_one(tmp_path)
    assert batch.errors == []
    (loaded,) = batch.jobs
    job = loaded.job
    assert job.kind == "summary"
    assert job.audio == FileAudio(file=tmp_path / "audio" / "take.wav")
    assert job.engine == PreviewSettings()
    assert job.output.path == Path("a.mp4")
    assert (job.output.fps, job.output.size, job.output.crf, job.seed) == (25, None, 18, 0)
    assert job.emotion == []
    assert loaded.persona.name == "Ann Example"
    assert loaded.persona_dir == (tmp_path / "personas" / "ann").resolve()
    assert loaded.persona_id == "ann"
    assert loaded.project_root == tmp_path.resolve()
    assert loaded.job_path == (tmp_path / "jobs" / "a.yaml").resolve()
    assert set(loaded.input_files()) == {
        (tmp_path / p).resolve()
        for p in ("jobs/a.yaml", "personas/ann/persona.yaml", "personas/ann/face.png")
    } | {tmp_path / "audio" / "take.wav"}


def test_audio_file_mapping_form(tmp_path):
    job = the_job(tmp_path, audio={"file": "../audio/b.wav"})
    assert job.audio == FileAudio(file=tmp_path / "audio" / "b.wav")


def test_audio_segments_with_pauses(tmp_path):
    job = the_job(
        tmp_path,
        audio={"segments": [{"file": "../audio/take.wav"}, {"pause": 0.5}, {"file": "../audio/b.wav"}]},
    )
    assert isinstance(job.audio, SegmentsAudio)
    assert job.audio.segments == [
        FileSegment(file=tmp_path / "audio" / "take.wav"),
        PauseSegment(pause=0.5),
        FileSegment(file=tmp_path / "audio" / "b.wav"),
    ]
    assert job.audio.files() == [tmp_path / "audio" / "take.wav", tmp_path / "audio" / "b.wav"]


def test_audio_draft_text(tmp_path):
    job = the_job(tmp_path, audio={"text": "Hello there."})
    assert job.audio == TextAudio(text="Hello there.", voice="en")
    job = the_job(tmp_path, audio={"text": "Bonjour.", "voice": "fr"})
    assert job.audio == TextAudio(text="Bonjour.", voice="fr")


def test_script_next_to_recorded_audio(tmp_path):
    assert the_job(tmp_path, script="Hello and welcome.").script == "Hello and welcome."


def test_engine_bare_string_and_mapping(tmp_path):
    job = the_job(tmp_path, engine="latentsync-1.5")
    assert job.engine == LatentSyncSettings(name="latentsync-1.5")
    assert (job.engine.steps, job.engine.guidance, job.engine.dtype) == (20, 1.5, "auto")
    job = the_job(
        tmp_path, engine={"name": "latentsync-1.6", "steps": 8, "deep_cache": True, "dtype": "bfloat16"}
    )
    assert job.engine == LatentSyncSettings(name="latentsync-1.6", steps=8, deep_cache=True, dtype="bfloat16")
    job = the_job(tmp_path, engine={"name": "preview", "idle": 0, "mouth_gain": 2.5})
    assert job.engine == PreviewSettings(idle=0, mouth_gain=2.5)


def test_engine_defaults_to_the_personas_engine(tmp_path):
    job = the_job(tmp_path, persona={"engine": {"name": "latentsync-1.6", "steps": 30}})
    assert job.engine == LatentSyncSettings(name="latentsync-1.6", steps=30)
    job = the_job(tmp_path, persona={"engine": "latentsync-1.6"}, engine="preview")
    assert job.engine == PreviewSettings()


def test_engine_names_match_the_registry():
    assert sorted(ENGINE_NAMES) == engine_names()
    assert engine_settings("preview") == PreviewSettings()


def test_emotion_track_with_persona_emotion(tmp_path):
    track = [
        {"start": 0, "emotion": "neutral"},
        {"start": 1.5, "end": 3, "emotion": "proud", "intensity": 0.4},
        {"start": 3, "emotion": "happy"},
    ]
    job = the_job(tmp_path, emotion=track, persona={"emotions": {"proud": {"smile": 0.5, "head_pitch": 2}}})
    assert [(e.start, e.end, e.emotion, e.intensity) for e in job.emotion] == [
        (0, None, "neutral", 1.0),
        (1.5, 3, "proud", 0.4),
        (3, None, "happy", 1.0),
    ]


def test_kinds_with_their_composition_fields(tmp_path):
    job = the_job(tmp_path, kind="intro", title={"text": "Welcome"}, closing={"text": "Bye"})
    assert job.title.text == "Welcome"
    job = the_job(tmp_path, kind="summary", chapters=[{"at": 1, "text": "First"}])
    assert job.chapters[0].text == "First"
    touch(tmp_path / "jobs" / "q.wav")
    job = the_job(tmp_path, kind="faq", question={"text": "Why?"}, question_audio="q.wav")
    assert job.question_audio == tmp_path / "jobs" / "q.wav"


def test_output_settings(tmp_path):
    job = the_job(
        tmp_path, output={"path": "clips/intro.mp4", "fps": 30, "size": [720, 1280], "crf": 23}, seed=7
    )
    assert (job.output.path, job.output.fps, job.output.size, job.output.crf) == (
        Path("clips/intro.mp4"),
        30,
        (720, 1280),
        23,
    )
    assert job.seed == 7


def test_layout_background_image_resolved_and_colour_kept(tmp_path):
    touch(tmp_path / "jobs" / "bg.png")
    assert (
        the_job(tmp_path, layout={"background": "bg.png"}).layout.background == tmp_path / "jobs" / "bg.png"
    )
    assert the_job(tmp_path, layout={"background": "#112233"}).layout.background == "#112233"


def test_job_built_in_python_keeps_paths_and_gets_preview():
    job = Job(kind="intro", persona="ann", audio="talk.wav")
    assert job.audio == FileAudio(file=Path("talk.wav"))
    assert job.engine == PreviewSettings()
    assert job.output.path is None


AUDIO_FORMS = "expected a file path, {file: path}, {segments: [{file: path} | {pause: seconds}, ...]} or {text: ..., voice: en}"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"kind": "intr"}, ("kind", "Input should be 'intro', 'summary' or 'faq', got 'intr'")),
        ({"kind": None}, ("kind", "required field missing")),
        (
            {"emotions": []},
            (
                "emotions",
                "unknown field; known: audio, captions, chapters, closing, emotion, engine, kind, layout, output, "
                "persona, question, question_audio, script, seed, theme, title",
            ),
        ),
        ({"audio": {"foo": 1}}, ("audio", AUDIO_FORMS)),
        ({"audio": {"file": "../audio/take.wav", "text": "hi"}}, ("audio", AUDIO_FORMS)),
        ({"audio": {"file": "../audio/take.wav", "gain": 2}}, ("audio.gain", "unknown field")),
        (
            {"audio": {"segments": []}},
            ("audio.segments", "List should have at least 1 item after validation, not 0"),
        ),
        (
            {"audio": {"segments": [{"pause": 0}]}},
            ("audio.segments.0.pause", "Input should be greater than 0, got 0"),
        ),
        (
            {"audio": {"segments": [{"silence": 1}]}},
            ("audio.segments.0", "expected {file: path} or {pause: seconds}"),
        ),
        ({"audio": {"text": ""}}, ("audio.text", "String should have at least 1 character, got ''")),
        (
            {"audio": {"text": "hi"}, "script": "hi"},
            ("script", "text audio already has its text; script is for recorded audio"),
        ),
        (
            {"emotion": [{"start": 0, "emotion": "joy"}]},
            ("emotion.0.emotion", f"unknown emotion 'joy'; known: {BUILTIN}"),
        ),
        (
            {"emotion": [{"start": -1, "emotion": "sad"}]},
            ("emotion.0.start", "Input should be greater than or equal to 0, got -1"),
        ),
        (
            {"emotion": [{"start": 0, "emotion": "sad", "intensity": 1.5}]},
            ("emotion.0.intensity", "Input should be less than or equal to 1, got 1.5"),
        ),
        (
            {"emotion": [{"start": 2, "end": 1, "emotion": "sad"}]},
            ("emotion.0.end", "must be after start (2), got 1"),
        ),
        (
            {"emotion": [{"start": 2, "emotion": "sad"}, {"start": 1, "emotion": "happy"}]},
            ("emotion.1.start", "entries must be sorted by start: 1 is not after 2"),
        ),
        ({"emotion": [{"start": 1}]}, ("emotion.0.emotion", "required field missing")),
        (
            {"engine": "warp"},
            (
                "engine",
                "unknown engine 'warp'; known: preview, latentsync-1.5, latentsync-1.6, echomimic-v2, echomimic-v2-acc, "
                "musetalk-1.5, echomimic-v3-flash, echomimic-v3-preview",
            ),
        ),
        (
            {"engine": {"steps": 4}},
            (
                "engine",
                "engine needs a name, one of: preview, latentsync-1.5, latentsync-1.6, echomimic-v2, echomimic-v2-acc, "
                "musetalk-1.5, echomimic-v3-flash, echomimic-v3-preview",
            ),
        ),
        ({"engine": {"name": "preview", "steps": 4}}, ("engine.steps", "unknown field")),
        (
            {"engine": {"name": "preview", "idle": 3}},
            ("engine.idle", "Input should be less than or equal to 2, got 3"),
        ),
        (
            {"engine": {"name": "latentsync-1.6", "steps": 0}},
            ("engine.steps", "Input should be greater than or equal to 1, got 0"),
        ),
        (
            {"engine": {"name": "latentsync-1.5", "guidance": 6}},
            ("engine.guidance", "Input should be less than or equal to 5, got 6"),
        ),
        (
            {"engine": {"name": "latentsync-1.6", "dtype": "int8"}},
            ("engine.dtype", "Input should be 'auto', 'float16', 'bfloat16' or 'float32', got 'int8'"),
        ),
        ({"output": {"fps": 0}}, ("output.fps", "Input should be greater than or equal to 1, got 0")),
        ({"output": {"fps": 61}}, ("output.fps", "Input should be less than or equal to 60, got 61")),
        ({"output": {"crf": 52}}, ("output.crf", "Input should be less than or equal to 51, got 52")),
        (
            {"output": {"preset": "warp9"}},
            (
                "output.preset",
                "Input should be 'ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow',"
                " 'slower' or 'veryslow', got 'warp9'",
            ),
        ),
        (
            {"output": {"size": [513, 512]}},
            ("output.size", "width and height must be even (H.264 yuv420p), got 513x512"),
        ),
        ({"output": {"size": [8, 8]}}, ("output.size", "width and height must be within 16..4096, got 8x8")),
        ({"output": {"size": [512]}}, ("output.size.1", "required field missing")),
        ({"output": {"path": "clip.mov"}}, ("output.path", "expected a .mp4 file name, got 'clip.mov'")),
        (
            {"output": {"path": "../clip.mp4"}},
            (
                "output.path",
                "../clip.mp4 leaves the output folder; use a relative path without '..' (or --allow-outside-paths)",
            ),
        ),
        ({"seed": -1}, ("seed", "Input should be greater than or equal to 0, got -1")),
        (
            {"kind": "intro", "chapters": [{"at": 0, "text": "x"}]},
            ("chapters", "only summary jobs use chapters; this job's kind is intro"),
        ),
        (
            {"kind": "summary", "title": {"text": "x"}},
            ("title", "only intro jobs use title; this job's kind is summary"),
        ),
        ({"kind": "faq"}, ("question", "an faq job needs a question: {text: ...}")),
    ],
)
def test_invalid_job_field(tmp_path, overrides, expected):
    batch = load_one(tmp_path, **overrides)  # a None override leaves the field out
    assert batch.jobs == []
    assert expected in errors_of(batch), [e.one_line() for e in batch.errors]
    assert {e.file for e in batch.errors} == {str(tmp_path / "jobs" / "a.yaml")}


def test_question_audio_in_a_summary_and_missing(tmp_path):
    batch = load_one(tmp_path, kind="summary", question_audio="nope.wav")
    assert errors_of(batch) == [
        ("question_audio", f"file not found: {tmp_path / 'jobs' / 'nope.wav'}"),
        ("question_audio", "only faq jobs use question_audio; this job's kind is summary"),
    ]


def test_missing_media_files_name_their_field(tmp_path):
    batch = load_one(
        tmp_path, audio={"segments": [{"file": "../audio/take.wav"}, {"pause": 1}, {"file": "gone.wav"}]}
    )
    assert errors_of(batch) == [
        ("audio.segments.2.file", f"file not found: {tmp_path / 'jobs' / 'gone.wav'}")
    ]
    batch = load_one(tmp_path, audio="../audio")
    assert errors_of(batch) == [("audio.file", f"expected a file, found a folder: {tmp_path / 'audio'}")]
    batch = load_one(tmp_path, layout={"background": "bg.jpg"})
    assert errors_of(batch) == [("layout.background", f"file not found: {tmp_path / 'jobs' / 'bg.jpg'}")]


def test_every_error_of_a_file_is_reported(tmp_path):
    batch = load_one(
        tmp_path,
        kind="faq",
        audio={"segments": [{"pause": -1}]},
        emotion=[{"start": 3, "emotion": "joy"}, {"start": 1, "end": 0.5, "emotion": "sad"}],
        engine={"name": "latentsync-1.6", "steps": 1000},
        chapters=[{"at": 1, "text": "x"}],
    )
    errors = errors_of(batch)
    assert len(errors) == len(set(errors))
    assert set(errors) == {
        ("audio.segments.0.pause", "Input should be greater than 0, got -1"),
        ("emotion.0.emotion", f"unknown emotion 'joy'; known: {BUILTIN}"),
        ("engine.steps", "Input should be less than or equal to 100, got 1000"),
        ("chapters", "only summary jobs use chapters; this job's kind is faq"),
        ("question", "an faq job needs a question: {text: ...}"),
        ("emotion.1.end", "must be after start (1), got 0.5"),
        ("emotion.1.start", "entries must be sorted by start: 1 is not after 3"),
    }
