"""The error table: expected errors -> one line and their exit code; anything else -> exit 1; -v adds the traceback."""

import typer
from typer.testing import CliRunner

from cli.errors import handle_errors, set_verbose
from pipelines.errors import InputError, WeightsMissingError


def app_raising(exc: Exception) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @handle_errors
    def boom() -> None:
        raise exc

    return app


def run(exc: Exception, verbose: bool = False):
    set_verbose(verbose)
    try:
        return CliRunner().invoke(app_raising(exc), [])
    finally:
        set_verbose(False)


def test_input_error_is_one_line_and_exit_2():
    result = run(InputError("jobs/a.yaml", "audio", "file not found: a.wav"))
    assert result.exit_code == 2
    assert result.output.strip() == "error: jobs/a.yaml: audio: file not found: a.wav"


def test_weights_missing_is_exit_4():
    result = run(
        WeightsMissingError("latentsync-1.6 weights missing; run: talkreel weights download latentsync-1.6")
    )
    assert result.exit_code == 4
    assert "talkreel weights download latentsync-1.6" in result.output


def test_internal_error_is_exit_1_without_a_traceback():
    result = run(ZeroDivisionError("oops"))
    assert result.exit_code == 1
    assert "internal error: ZeroDivisionError: oops" in result.output
    assert "Traceback" not in result.output


def test_verbose_shows_the_traceback():
    result = run(ZeroDivisionError("oops"), verbose=True)
    assert result.exit_code == 1
    assert "Traceback" in result.output


def test_verbose_flag_reaches_commands():
    from cli.main import app

    result = CliRunner().invoke(app, ["-v", "render", "no-such-folder", "--quiet"])
    assert result.exit_code == 2
    assert "no-such-folder: no such file or folder" in result.output
    set_verbose(False)
