"""`talkreel validate PATH...`: every error of every job and persona file, as `file: field: message`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.errors import EXIT_INPUT, handle_errors
from cli.output import err_console, print_json
from pipelines.errors import InputError

if TYPE_CHECKING:
    from pipelines.spec.loader import Batch, LoadedJob, LoadedPersona


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def persona_face_issues(personas: list[LoadedPersona]) -> tuple[list[InputError], list[InputError]]:
    """(errors, warnings) of the face check of each persona's source, looks and mouths clip: no face at all is an error,
    several faces, a small face or a profile view are warnings."""
    from pipelines.face.inspect import inspect_source  # MediaPipe: only when a check runs
    from pipelines.spec.paths import display

    errors: list[InputError] = []
    warnings: list[InputError] = []
    for loaded in personas:
        for field, path in loaded.persona.face_media().items():
            try:
                problems = inspect_source(path).problems
            except InputError as exc:  # unreadable media: this persona's error, not the batch's end
                errors.append(InputError(display(loaded.path), field, exc.message))
                continue
            if (
                field == "source"
                and loaded.persona.face is not None
                and not any(p.code in ("no_face", "unreadable") for p in problems)
            ):
                problem = _face_pick_problem(path, loaded.persona.face)
                if problem:
                    errors.append(InputError(display(loaded.path), "face", problem))
                    continue
                problems = [p for p in problems if p.code != "multiple_faces"]  # the persona chose one
            for problem in problems:
                issue = InputError(display(loaded.path), field, f"{problem.message}: {display(path)}")
                (errors if problem.severity == "error" else warnings).append(issue)
    return errors, warnings


def _face_pick_problem(path, pick) -> str | None:
    """Why the persona's `face` pick selects no face of its photo (or of its video's first frame with a face, where
    the engines make the pick), or None."""
    from pipelines.face.landmarks import detect_faces
    from pipelines.face.pick import FacePickError, pick_face
    from pipelines.media.video_in import open_source

    for image in open_source(path, 25.0).frames():
        faces = detect_faces(image)
        if faces:
            try:
                pick_face(faces, pick, (image.shape[1], image.shape[0]))
            except FacePickError as exc:
                return str(exc)
            return None
    return "no face found"


def check_batch_faces(batch: Batch) -> list[InputError]:
    """Run the face check on the batch's personas; their errors (and one per job using such a persona) go into
    `batch.errors`, jobs of those personas leave `batch.jobs`. Returns the warnings."""
    from pipelines.spec.paths import display

    errors, warnings = persona_face_issues(batch.personas)
    faceless = {e.file for e in errors}
    batch.errors.extend(errors)
    for loaded in list(batch.jobs):
        if display(loaded.persona_file) in faceless:
            batch.errors.append(
                InputError(
                    display(loaded.job_path), "persona", f"persona {loaded.persona_id!r} has no usable face"
                )
            )
            batch.jobs.remove(loaded)
    return warnings


def job_media_issues(loaded: LoadedJob) -> tuple[list[InputError], list[InputError]]:
    """(errors, warnings) of a job's audio files: each must be readable media with an audio stream; an emotion
    entry that starts after the audio has ended is a warning (it would have no effect)."""
    from pipelines.media.probe import probe
    from pipelines.spec.audio import FileAudio, FileSegment, PauseSegment, SegmentsAudio, TextAudio
    from pipelines.spec.paths import display
    from pipelines.speech.tts import check_voice

    job, file = loaded.job, display(loaded.job_path)
    errors: list[InputError] = []
    warnings: list[InputError] = []
    spoken: list[tuple[str, Path]] = []
    seconds: float | None = None  # unknown for draft text until it is synthesised
    if isinstance(job.audio, TextAudio):
        try:
            check_voice(job.audio.voice)
        except InputError as exc:
            errors.append(InputError(file, "audio.voice", exc.message))
        else:
            if job.chapters or job.emotion:  # times to check against the draft's length: synthesise it
                seconds = draft_seconds(job.audio)
    warnings += glyph_warnings(loaded)
    if isinstance(job.audio, FileAudio):
        spoken, seconds = [("audio.file", job.audio.file)], 0.0
    elif isinstance(job.audio, SegmentsAudio):
        segments = job.audio.segments
        spoken = [
            (f"audio.segments.{i}.file", s.file) for i, s in enumerate(segments) if isinstance(s, FileSegment)
        ]
        seconds = sum(s.pause for s in segments if isinstance(s, PauseSegment))
    others = [("question_audio", job.question_audio)] if job.question_audio is not None else []
    for field, path in spoken + others:
        try:
            info = probe(path)
        except InputError as exc:
            errors.append(InputError(file, field, exc.message))
            seconds = None
            continue
        if not info.has_audio:
            errors.append(InputError(file, field, f"no audio stream in {display(path)}"))
            seconds = None
        elif seconds is not None and (field, path) in spoken:
            seconds += info.audio_duration or info.duration
    if seconds is not None:
        chapters = [(f"chapters.{i}.at", c.at) for i, c in enumerate(job.chapters)]
        errors += _after_the_audio(file, chapters, seconds, "")
        entries = [(f"emotion.{i}.start", e.start) for i, e in enumerate(job.emotion)]
        warnings += _after_the_audio(file, entries, seconds, "; this entry has no effect")
    return errors, warnings


def draft_seconds(audio) -> float:
    """How long draft (text) speech lasts in the output clip: espeak's reading plus the pauses around it."""
    from pipelines.render import DRAFT_PAUSE
    from pipelines.speech.tts import synthesize

    return synthesize(audio.text, voice=audio.voice).duration + 2 * DRAFT_PAUSE


def glyph_warnings(loaded: LoadedJob) -> list[InputError]:
    """Texts with characters no installed font can draw (they would render as boxes), and a disclosure label
    that gives way to the default text for that reason."""
    from pipelines.compose.plan import missing_glyph_report
    from pipelines.provenance.label import resolve_label
    from pipelines.spec.audio import TextAudio
    from pipelines.spec.compose import Theme
    from pipelines.spec.paths import display

    job, persona = loaded.job, loaded.persona
    theme = loaded.theme or Theme()
    script = job.audio.text if isinstance(job.audio, TextAudio) else job.script
    report = missing_glyph_report(job, job.kind, persona.name, theme, script)
    warnings = [
        InputError(
            display(loaded.job_path), field, f"no installed font has glyphs for {chars!r}; drawn as boxes"
        )
        for field, chars in report.items()
    ]
    label = resolve_label(persona.disclosure, theme)
    if label is not None and label.note:
        warnings.append(InputError(display(loaded.persona_file), "disclosure.text", label.note))
    return warnings


def _after_the_audio(
    file: str, times: list[tuple[str, float]], seconds: float, note: str
) -> list[InputError]:
    """An issue for each (field, time) that is not before the end of the audio."""
    return [
        InputError(file, field, f"{at:g} s is not before the end of the audio ({seconds:.2f} s){note}")
        for field, at in times
        if at >= seconds
    ]


def check_batch_media(batch: Batch) -> list[InputError]:
    """Probe every job's audio; jobs with unreadable audio move from `batch.jobs` to `batch.errors`.
    Returns the warnings."""
    warnings: list[InputError] = []
    for loaded in list(batch.jobs):
        errors, job_warnings = job_media_issues(loaded)
        warnings += job_warnings
        if errors:
            batch.errors.extend(errors)
            batch.jobs.remove(loaded)
    return warnings


@handle_errors
def validate(
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH", help="Job files, persona.yaml files, or folders of them."
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print {valid, errors, warnings} as JSON on stdout."
    ),
    allow_outside_paths: bool = typer.Option(
        False, "--allow-outside-paths", help="Allow paths that leave the project root."
    ),
    faces: bool = typer.Option(
        True, "--faces/--no-faces", help="Check that every persona source shows a detectable face."
    ),
) -> None:
    """Check job and persona files without rendering; exit 2 if anything is invalid.

    Every error of every file is printed as `file: field: message`. Besides the fields, audio files are probed
    and each persona's source must show a detectable face (several faces, a small face or a profile view are
    warnings)."""
    from pipelines.spec.loader import load_batch
    from pipelines.spec.paths import display

    batch = load_batch(paths, allow_outside_paths=allow_outside_paths)
    warnings = check_batch_media(batch)
    if faces:
        warnings += check_batch_faces(batch)
    failed = {e.file for e in batch.errors}
    valid = [display(p) for p in batch.files if display(p) not in failed]

    if json_output:
        print_json(
            {
                "valid": valid,
                "errors": [_as_dict(e) for e in batch.errors],
                "warnings": [_as_dict(w) for w in warnings],
            }
        )
    else:
        for error in batch.errors:
            err_console.print(error.one_line(), markup=False, highlight=False, soft_wrap=True)
        for warning in warnings:
            err_console.print(f"warning: {warning.one_line()}", markup=False, highlight=False, soft_wrap=True)
        summary = f"{len(valid)} valid, {len(batch.errors)} error(s), {len(warnings)} warning(s)"
        err_console.print(summary, markup=False, highlight=False)
    if batch.errors:
        raise typer.Exit(EXIT_INPUT)


def _as_dict(error: InputError) -> dict[str, str | None]:
    return {"file": error.file, "field": error.field, "message": error.message}
