"""`talkreel report OUT_DIR`: the static review page of a render's output folder."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.errors import handle_errors
from cli.output import err_console, print_json


def register(app: typer.Typer) -> None:
    app.command("report")(report)


@handle_errors
def report(
    out_dir: Path = typer.Argument(..., help="The output folder of talkreel render (its --out)."),
    open_page: bool = typer.Option(False, "--open", help="Open the page in the default web browser."),
    as_json: bool = typer.Option(False, "--json", help="Print the page's path as JSON on stdout."),
) -> None:
    """Write OUT_DIR/report/index.html: every output with its video, captions, contact sheet, plots, QC figures,
    engine, timings, consent and provenance, and the last batch's summary. Static: opens from file://."""
    from pipelines.qc.report import write_report

    index = write_report(out_dir)
    if as_json:
        print_json({"report": str(index)})
    else:
        err_console.print(f"review page: {index}", highlight=False)
    if open_page:
        import webbrowser

        webbrowser.open(index.as_uri())
