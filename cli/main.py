"""The `talkreel` command: one module per command group, composed here."""

from __future__ import annotations

import typer

from cli.errors import set_verbose

app = typer.Typer(
    name="talkreel",
    help="Batch renderer for talking-head video: YAML jobs in, finished MP4s out.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show tracebacks for errors."),
) -> None:
    set_verbose(verbose)


def _register() -> None:
    # Each command module adds its commands/groups to `app` in a `register(app)` function.
    from cli import commands

    for module in commands.MODULES:
        module.register(app)


_register()


def main() -> None:
    app()
