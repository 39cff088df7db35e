"""`talkreel schema`: the JSON Schema of job and persona files, for editors."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.errors import handle_errors
from cli.output import err_console, print_json


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)


@handle_errors
def schema(
    out: Path | None = typer.Option(
        None, "--out", help="Write job.schema.json and persona.schema.json into this folder."
    ),
    only: str | None = typer.Option(None, "--only", help="Print just one schema on stdout: job or persona."),
) -> None:
    """Write the JSON Schema of job and persona files (stdout without --out)."""
    from pipelines.errors import InputError
    from pipelines.spec.schema import schemas, write_schemas

    if only is not None and only not in ("job", "persona"):
        raise InputError(None, "--only", f"expected job or persona, got {only!r}")
    if out is not None:
        for path in write_schemas(out):
            err_console.print(f"wrote {path}", markup=False, highlight=False)
        return
    every = schemas()
    print_json(every[f"{only}.schema.json"] if only else every)
