"""`talkreel verify FILE`: read back an output's invisible watermark and its C2PA manifest."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.errors import handle_errors
from cli.output import err_console, print_json


@handle_errors
def verify(
    file: Path = typer.Argument(..., help="An MP4 made by talkreel (or a re-encode of one)."),
    trust: list[Path] = typer.Option(
        [], "--trust", help="PEM CA certificate to accept as a trust anchor (repeatable)."
    ),
    frames: int = typer.Option(
        24, "--frames", min=1, max=2000, help="Frames to decode for the watermark vote."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Report the watermark id (majority vote over decoded frames) and the C2PA manifest's validation state.

    Exit code 0 when a watermark or a manifest was found, 3 when neither was.
    """
    from pipelines.errors import InputError
    from pipelines.provenance.verify import verify_file

    for anchor in trust:
        if not anchor.is_file():
            raise InputError(anchor, "--trust", "file not found")
    report = verify_file(file, trust_anchors=trust, n_frames=frames)
    if json_out:
        print_json(report)
    else:
        wm, c2 = report["watermark"], report["c2pa"]
        if wm["found"]:
            err_console.print(
                f"watermark: id {wm['id']} ({wm['frames_agreeing']}/{wm['frames_read']} frames agree on their own, "
                f"bit margin {wm['bit_margin']})",
                markup=False,
                soft_wrap=True,
            )
        else:
            err_console.print(
                f"watermark: not found in {wm['frames_read']} frames", markup=False, soft_wrap=True
            )
        if not c2["present"]:
            err_console.print("c2pa: no manifest", markup=False, soft_wrap=True)
        else:
            err_console.print(
                f"c2pa: {c2['verdict']} (state {c2['validation_state']})", markup=False, soft_wrap=True
            )
            if c2.get("signer"):
                err_console.print(f"  signer: {c2['signer']}", markup=False, soft_wrap=True)
            for action in c2.get("actions", []):
                err_console.print(
                    f"  action: {action['action']} ({action['digitalSourceType']})",
                    markup=False,
                    soft_wrap=True,
                )
            if c2.get("failures"):
                err_console.print(f"  failures: {', '.join(c2['failures'])}", markup=False, soft_wrap=True)
            if c2["verdict"] == "valid signature, untrusted signer":
                err_console.print(
                    "  (no trust anchor vouches for the signer; pass --trust CA.pem to check against one)",
                    markup=False,
                    soft_wrap=True,
                )
    if not report["watermark"]["found"] and not report["c2pa"]["present"]:
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
