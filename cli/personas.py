"""`talkreel personas list|show|check`: the personas of a project and whether their sources show a usable face."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cli.errors import EXIT_INPUT, handle_errors
from cli.output import err_console, print_json
from pipelines.errors import InputError

if TYPE_CHECKING:
    from pipelines.spec.loader import LoadedPersona

# Kept equal to pipelines.spec (which is imported only when a command runs, for a fast --help).
PERSONAS_DIR = "personas"
PERSONA_FILE = "persona.yaml"

personas_app = typer.Typer(
    help="List, show and check personas (personas/<id>/persona.yaml).", no_args_is_help=True
)

ROOT_HELP = (
    "Project folder holding personas/ (default: the current folder or the nearest parent with personas/)."
)
OUTSIDE_HELP = "Allow persona media outside the project root."


def register(app: typer.Typer) -> None:
    app.add_typer(personas_app, name="personas")


def find_root(root: Path | None) -> Path:
    if root is not None:
        if not (root / PERSONAS_DIR).is_dir():
            raise InputError(str(root), "--root", f"no {PERSONAS_DIR}/ folder here")
        return root
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        if (folder / PERSONAS_DIR).is_dir():
            return folder
    raise InputError(str(cwd), None, f"no {PERSONAS_DIR}/ folder here or in a parent folder; use --root DIR")


def _persona_file(root: Path, ref: str) -> Path:
    """An id under <root>/personas/, or a path to a persona folder or file."""
    from pipelines.spec.loader import persona_ids
    from pipelines.spec.paths import display

    by_id = root / PERSONAS_DIR / ref / PERSONA_FILE
    if by_id.is_file():
        return by_id
    path = Path(ref)
    if path.is_dir():
        path = path / PERSONA_FILE
    if path.is_file():
        return path
    known = ", ".join(persona_ids(root)) or "none"
    raise InputError(display(root / PERSONAS_DIR), None, f"unknown persona {ref!r}; known: {known}")


def _load_all(
    root: Path, ids: list[str], allow_outside: bool
) -> tuple[list[LoadedPersona], list[InputError]]:
    from pipelines.spec.loader import load_persona_file, persona_ids

    loaded, errors = [], []
    for ref in ids or persona_ids(root):
        try:
            loaded.append(load_persona_file(_persona_file(root, ref), allow_outside))
        except InputError as exc:
            errors.append(exc)
    return loaded, errors


def _engine_name(loaded: LoadedPersona) -> str:
    engine = loaded.persona.engine
    return engine.name if engine is not None else "preview"


def _print_errors(errors: list[InputError]) -> None:
    for error in errors:
        err_console.print(error.one_line(), markup=False, highlight=False, soft_wrap=True)


@personas_app.command("list")
@handle_errors
def list_personas(
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout."),
    allow_outside_paths: bool = typer.Option(False, "--allow-outside-paths", help=OUTSIDE_HELP),
) -> None:
    """Every persona: id, name, source kind, default engine. Exit 2 if a persona file is invalid."""
    loaded, errors = _load_all(find_root(root), [], allow_outside_paths)
    rows = [
        {"id": p.id, "name": p.persona.name, "source": p.persona.source_kind, "engine": _engine_name(p)}
        for p in loaded
    ]
    if json_output:
        print_json(rows)
    else:
        from rich.table import Table

        table = Table("id", "name", "source", "default engine")
        for row in rows:
            table.add_row(row["id"], row["name"], row["source"], row["engine"])
        err_console.print(table)
    _print_errors(errors)
    if errors:
        raise typer.Exit(EXIT_INPUT)


@personas_app.command("show")
@handle_errors
def show_persona(
    persona_id: str = typer.Argument(..., metavar="ID", help="Persona id (folder name) or path."),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print the persona as JSON on stdout."),
    allow_outside_paths: bool = typer.Option(False, "--allow-outside-paths", help=OUTSIDE_HELP),
) -> None:
    """Every field of one persona, paths resolved and defaults filled in."""
    from pipelines.spec.loader import load_persona_file
    from pipelines.spec.paths import display

    root_dir = find_root(root)
    loaded = load_persona_file(_persona_file(root_dir, persona_id), allow_outside_paths)
    data: dict[str, Any] = {
        "id": loaded.id,
        "file": display(loaded.path),
        "source_kind": loaded.persona.source_kind,
        **loaded.persona.model_dump(mode="json"),
    }
    if json_output:
        print_json(data)
        return
    if data["engine"] is None:
        data["engine"] = "not set (jobs without an engine use preview)"
    from rich.table import Table

    table = Table("field", "value", show_header=False)
    for key, value in _flatten(data):
        table.add_row(key, value)
    err_console.print(table)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, "" if value is None else str(value) if not isinstance(value, dict) else "{}"))
    return rows


@personas_app.command("check")
@handle_errors
def check_personas(
    persona_ids_: list[str] | None = typer.Argument(
        None, metavar="[ID]...", help="Persona ids (default: all)."
    ),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print the reports as JSON on stdout."),
    allow_outside_paths: bool = typer.Option(False, "--allow-outside-paths", help=OUTSIDE_HELP),
) -> None:
    """Face check of each persona's source (and looks, and mouths clip): no face (error), several faces, a small face or a
    profile view (warnings). Exit 2 if any persona is invalid or has no usable face."""
    from pipelines.face.inspect import inspect_source
    from pipelines.spec.paths import display

    loaded, errors = _load_all(find_root(root), list(persona_ids_ or []), allow_outside_paths)
    results = []
    for persona in loaded:
        for field, path in persona.persona.face_media().items():
            report = inspect_source(path)
            results.append((persona, field, path, report))
            for problem in report.errors:
                errors.append(InputError(display(persona.path), field, f"{problem.message}: {display(path)}"))

    if json_output:
        print_json(
            {
                "personas": [
                    {"id": p.id, "field": field, **report.to_dict(), "path": display(path)}
                    for p, field, path, report in results
                ],
                "errors": [{"file": e.file, "field": e.field, "message": e.message} for e in errors],
            }
        )
    else:
        from rich.table import Table

        table = Table("id", "media", "face", "size (px)", "yaw", "problems")
        for persona, field, _, report in results:
            size = f"{report.face_width:.0f}x{report.face_height:.0f}" if report.face_width else "-"
            yaw = f"{report.yaw:+.0f}" if report.yaw is not None else "-"
            status = (
                "[green]ok[/]"
                if report.ok and not report.problems
                else "[yellow]warn[/]"
                if report.ok
                else "[red]error[/]"
            )
            problems = "; ".join(f"{p.severity}: {p.message}" for p in report.problems) or "-"
            table.add_row(persona.id, field, status, size, yaw, problems)
        err_console.print(table)
        _print_errors(errors)
    if errors:
        raise typer.Exit(EXIT_INPUT)


@personas_app.command("poses")
@handle_errors
def persona_poses(
    persona_ref: str = typer.Argument(
        ..., metavar="PERSONA", help="Persona id, or a persona folder or file."
    ),
    from_video: Path | None = typer.Option(
        None, "--from", help="Video of someone gesturing (half body, facing the camera): hands are tracked."
    ),
    upstream: Path | None = typer.Option(
        None,
        "--upstream",
        help="Folder of upstream EchoMimic V2 per-frame pose files (0.npy, 1.npy, ...): read as plain arrays only.",
    ),
    fps: float | None = typer.Option(
        None, "--fps", min=1.0, max=120.0, help="Sample the video at this rate."
    ),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
    allow_outside_paths: bool = typer.Option(False, "--allow-outside-paths", help=OUTSIDE_HELP),
) -> None:
    """Give a persona hand gestures for the half-body engine (echomimic-v2): track the hands of a video with
    MediaPipe, or import an upstream pose folder, and store them with the persona (poses.npz, plain arrays).
    persona.yaml gets `poses: poses.npz` unless it already names a poses file, which is then replaced."""
    from pipelines.spec.loader import load_persona_file
    from pipelines.spec.paths import display

    if (from_video is None) == (upstream is None):
        raise InputError(None, "--from", "give exactly one of --from VIDEO or --upstream FOLDER")
    loaded = load_persona_file(_persona_file(find_root(root), persona_ref), allow_outside_paths)
    if from_video is not None:
        from pipelines.poses.extract import extract_video

        if not from_video.is_file():
            raise InputError(str(from_video), "--from", "file not found")
        poses = extract_video(from_video, fps)
    else:
        from pipelines.poses.upstream import import_pose_folder

        if not upstream.is_dir():
            raise InputError(str(upstream), "--upstream", "not a folder")
        poses = import_pose_folder(upstream)
    target = loaded.persona.poses or loaded.dir / "poses.npz"
    poses.save(Path(target))
    if loaded.persona.poses is None:
        text = loaded.path.read_text(encoding="utf-8")
        sep = "" if text.endswith("\n") or not text else "\n"
        loaded.path.write_text(f"{text}{sep}poses: {Path(target).name}\n", encoding="utf-8")
    seen = float((poses.scores.max(axis=2) > 0).mean())
    summary = {
        "persona": loaded.id,
        "poses": display(Path(target)),
        "frames": len(poses),
        "fps": poses.fps,
        "seconds": round(len(poses) / poses.fps, 3),
        "hands_seen": round(seen, 3),
        "body_anchor": poses.anchor is not None,
    }
    if json_output:
        print_json(summary)
        return
    err_console.print(
        f"{summary['poses']}: {summary['frames']} frames ({summary['seconds']} s at {poses.fps:g} fps), "
        f"hands seen in {seen:.0%} of hand slots",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if poses.anchor is None:
        err_console.print(
            "warning: no shoulders were found, so the gestures cannot be fitted to the persona's body: they are "
            "used at the same place in the picture",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
