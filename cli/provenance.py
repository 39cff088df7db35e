"""`talkreel provenance ...`: signing identities for the C2PA manifests of outputs."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.errors import handle_errors
from cli.output import err_console, print_json

provenance_app = typer.Typer(help="C2PA signing identities for outputs.", no_args_is_help=True)


@provenance_app.command("init")
@handle_errors
def init(
    directory: Path | None = typer.Option(
        None, "--dir", help="Where to write it (default: $TALKREEL_C2PA_DIR or ~/.config/talkreel/c2pa)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing test identity."),
    json_out: bool = typer.Option(False, "--json", help="Print the written paths as JSON."),
) -> None:
    """Create a local, self-signed TEST signing identity (a test CA + a signer certificate) for trying C2PA.

    Outputs signed with it validate as 'valid signature, untrusted signer': it proves nothing about who made
    a file. For publishing, point TALKREEL_C2PA_CERT / TALKREEL_C2PA_KEY at a certificate from a C2PA-trusted CA.
    """
    import os

    from pipelines.provenance.identity import ENV_DIR, create_test_identity, default_dir

    folder = directory or (Path(os.environ[ENV_DIR]) if os.environ.get(ENV_DIR) else default_dir())
    made = create_test_identity(folder, overwrite=force)
    if json_out:
        print_json(
            {"dir": made.folder, "chain": made.chain, "key": made.key, "ca": made.ca, "test_identity": True}
        )
        return
    err_console.print(
        f"TEST signing identity written to {made.folder} (self-signed: not trusted by anyone)",
        markup=False,
        soft_wrap=True,
    )
    err_console.print(
        f"  signer chain: {made.chain}\n  signer key:   {made.key}\n  test CA:      {made.ca}",
        markup=False,
        soft_wrap=True,
    )
    if directory is not None:
        err_console.print(
            f"use it for renders with: export {ENV_DIR}={made.folder}", markup=False, soft_wrap=True
        )
    err_console.print(
        f"check a signed file against it: talkreel verify FILE --trust {made.ca}",
        markup=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(provenance_app, name="provenance")
