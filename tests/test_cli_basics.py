from typer.testing import CliRunner

from cli.main import app


def test_help_lists_the_program():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "talkreel" in result.output.lower() or "Usage" in result.output
