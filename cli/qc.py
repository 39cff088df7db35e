"""`talkreel qc FILE`: lip-sync and delivery figures measured on a rendered file."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.errors import handle_errors
from cli.output import err_console, print_json


def register(app: typer.Typer) -> None:
    app.command("qc")(qc)


@handle_errors
def qc(
    file: Path = typer.Argument(..., help="A rendered MP4 (any video with an audio track)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON on stdout."),
    sheet: Path | None = typer.Option(
        None, "--sheet", help="Also write a contact sheet (PNG) of the video here."
    ),
) -> None:
    """Mouth opening (MediaPipe) vs. the speech envelope, closed mouth in silence, faces, durations, loudness."""
    from pipelines.qc.measure import qc_file

    figures = qc_file(file, sheet=sheet)
    if as_json:
        print_json(figures)
        return
    from rich.table import Table

    table = Table(title=f"QC {file}", show_header=False)
    for key, value in figures.items():
        if key == "file":
            continue
        table.add_row(key.replace("_", " "), "-" if value is None else str(value))
    err_console.print(table)
