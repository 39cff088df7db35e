"""`talkreel validate PATH...`: every error of every job and persona file, as `file: field: message`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.errors import EXIT_INPUT, handle_errors
from cli.output import err_console, print_json
from pipelines.errors import InputError

if TYPE_CHECKING:
    from pipelines.spec.loader import Batch, LoadedPersona


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def persona_face_issues(personas: list[LoadedPersona]) -> tuple[list[InputError], list[InputError]]:
    """(errors, warnings) of the face check of each persona's source and looks: no face at all is an error,
    several faces, a small face or a profile view are warnings."""
    from pipelines.face.inspect import inspect_source  # MediaPipe: only when a check runs
    from pipelines.spec.paths import display

    errors: list[InputError] = []
    warnings: list[InputError] = []
    for loaded in personas:
        media = {"source": loaded.persona.source} | {f"looks.{k}": v for k, v in loaded.persona.looks.items()}
        for field, path in media.items():
            for problem in inspect_source(path).problems:
                issue = InputError(display(loaded.path), field, f"{problem.message}: {display(path)}")
                (errors if problem.severity == "error" else warnings).append(issue)
    return errors, warnings


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


@handle_errors
def validate(
    paths: list[Path] = typer.Argument(..., help="Job files, persona.yaml files, or folders of them."),
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
    """Check job and persona files without rendering; exit 2 if anything is invalid."""
    from pipelines.spec.loader import load_batch
    from pipelines.spec.paths import display

    batch = load_batch(paths, allow_outside_paths=allow_outside_paths)
    warnings = check_batch_faces(batch) if faces else []
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
