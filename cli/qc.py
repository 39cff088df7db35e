"""`talkreel qc FILE...`: lip-sync and delivery figures measured on rendered files, and QC gates for CI."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.errors import EXIT_JOBS_FAILED, handle_errors
from cli.output import err_console, print_json


def register(app: typer.Typer) -> None:
    app.command("qc")(qc)


def gates_from_options(fail_under: list[str], maximum: list[str], gates_file: Path | None) -> list:
    """The gates of --gates FILE, then of --fail-under / --max (input errors name the option)."""
    from pipelines.qc.gates import load_gates, parse_gate

    gates = load_gates(gates_file) if gates_file is not None else []
    gates += [parse_gate(text, True, "--fail-under") for text in fail_under]
    gates += [parse_gate(text, False, "--max") for text in maximum]
    return gates


@handle_errors
def qc(
    files: list[Path] = typer.Argument(..., help="Rendered MP4s (any video with an audio track)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON on stdout."),
    sheet: Path | None = typer.Option(
        None, "--sheet", help="Also write a contact sheet (PNG) of the video here (one file only)."
    ),
    sync: bool = typer.Option(
        False,
        "--sync",
        help="Also score lip sync with LatentSync's SyncNet (talkreel weights download syncnet).",
    ),
    fail_under: list[str] = typer.Option(
        [], "--fail-under", metavar="NAME=VALUE", help="Fail (exit 3) when a figure is under VALUE."
    ),
    maximum: list[str] = typer.Option(
        [], "--max", metavar="NAME=VALUE", help="Fail (exit 3) when a figure is over VALUE."
    ),
    gates_file: Path | None = typer.Option(
        None,
        "--gates",
        help="A YAML file of gates (fail_under: / max: mappings), e.g. the project's qc-gates.yaml.",
    ),
    face: str | None = typer.Option(
        None,
        "--face",
        metavar="N|X,Y",
        help="The person to measure when the video shows several: N = the N-th largest face (0 the largest), "
        "X,Y = the face at that point (fractions of the frame), followed from frame to frame. Default: the "
        "face the file's job record names (the persona's pick, where the render put it), else the largest.",
    ),
) -> None:
    """Every frame measured: mouth opening statistics, closed mouth in pauses, audio/video offset, face sharpness,
    durations, loudness; with --sync the SyncNet confidence, distance and offset. Gates: exit 3 and one line per
    failing file. What each figure means and its range: docs/qc.md."""
    from pipelines.errors import InputError
    from pipelines.qc.gates import failures
    from pipelines.qc.measure import face_target, qc_file

    if sheet is not None and len(files) != 1:
        raise InputError(None, "--sheet", "takes one file; give one FILE with it")
    try:
        chosen = face_target(face)
    except ValueError as exc:
        raise InputError(None, "--face", str(exc)) from None
    gates = gates_from_options(fail_under, maximum, gates_file)
    model = None
    if sync:
        from pipelines.qc.sync import load_default_syncnet

        model = load_default_syncnet()
    results, failed = [], []
    for file in files:
        target = chosen if face is not None else _recorded_face(file)
        figures = qc_file(file, sheet=sheet, face=target)
        if model is not None:
            from pipelines.qc.sync import sync_figures

            figures.update(sync_figures(file, model, face=target))
        reasons = failures(figures, gates)
        if gates:
            figures["gates"] = {"passed": not reasons, "failures": reasons}
        if reasons:
            failed.append(f"{file}: qc gate failed: {'; '.join(reasons)}")
        results.append(figures)
    if as_json:
        print_json(results[0] if len(results) == 1 else results)
    else:
        _print_tables(results)
    for line in failed:
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(EXIT_JOBS_FAILED)


def _recorded_face(file: Path):
    """The face the render measured (its record's `qc_face`), so QC run later measures the same person; None
    when there is no record beside the file or it names none."""
    from pipelines.publish import read_record
    from pipelines.qc.measure import face_target

    try:
        return face_target(read_record(file).get("qc_face"))
    except ValueError:  # a record from elsewhere, or edited: measure the largest face, as without one
        return None


def _print_tables(results: list[dict]) -> None:
    from rich.table import Table

    for figures in results:
        table = Table(title=f"QC {figures['file']}", show_header=False)
        for key, value in figures.items():
            if key in ("file", "gates"):
                continue
            table.add_row(key.replace("_", " "), "-" if value is None else str(value))
        err_console.print(table)
