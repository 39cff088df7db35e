"""`talkreel weights`: list, download, verify, import, path and lock model weights.

Exit codes: 0 done; 2 a file is corrupted/truncated/not the locked one, a checkpoint's keys do not match the
engine, or there is no lock entry to verify against; 4 weights are missing (the message names the command to run).
"""

from __future__ import annotations

from pathlib import Path

import typer

from cli.errors import EXIT_INPUT, EXIT_WEIGHTS, handle_errors
from cli.output import err_console, print_json

weights_app = typer.Typer(
    name="weights",
    help="Model weights: download pinned files, verify sha256, import air-gapped copies.",
    no_args_is_help=True,
)

_DIR = typer.Option(
    None, "--dir", help="Weights folder (default: $TALKREEL_WEIGHTS or ~/.cache/talkreel/weights)."
)
_LOCK = typer.Option(None, "--lock", help="Lock file (default: weights.lock at the repository root).")
_JSON = typer.Option(False, "--json", help="Machine-readable output on stdout.")

_STATE_STYLE = {
    "verified": "green",
    "unlocked": "yellow",
    "unverified": "yellow",
    "missing": "red",
    "truncated": "red",
    "corrupt": "red",
}


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")


def expected_keys(engine_id: str, role: str):
    """The key/shape list a converted checkpoint must match, from the engine that will load it."""
    if engine_id.startswith("latentsync-") and role == "unet":
        from pipelines.engines.latentsync.unet import RESOLUTIONS, expected_unet_keys

        return expected_unet_keys(RESOLUTIONS[engine_id])
    if engine_id == "syncnet":
        from pipelines.qc.syncnet import expected_keys as syncnet_keys

        return syncnet_keys()
    if engine_id.startswith("musetalk-") and role == "unet":
        from pipelines.engines.musetalk.unet import expected_unet_keys as musetalk_keys

        return musetalk_keys()
    return None


def _say(message: str) -> None:
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


def _engines_or_all(engines: list[str] | None) -> list[str]:
    from pipelines.weights.manifest import engine_ids, entries

    for e in engines or []:
        entries(e)
    return list(engines) if engines else engine_ids()


def _table(rows, title: str):
    from rich.table import Table

    from pipelines.weights.manifest import entries
    from pipelines.weights.store import human_size

    # Rough sizes from the manifest (shown on the entry's weights file, not its config) until a lock gives exact ones.
    approx = {(w.repo, w.role): w.approx_bytes for r in rows[:1] for w in entries(r.engine)}
    seen: set[tuple[str, str]] = set()

    table = Table(title=title, title_justify="left")
    for col in ("role", "file", "size", "state", "safetensors"):
        table.add_column(col, justify="right" if col == "size" else "left", overflow="fold")
    for r in rows:
        if r.size is not None:
            size = human_size(r.size)
            if r.expected_size is not None and r.size != r.expected_size:
                size = f"{size} of {human_size(r.expected_size)}"
        elif r.expected_size is not None:
            size = human_size(r.expected_size)
        elif approx.get((r.repo, r.role)) and (r.repo, r.role) not in seen and not r.path.endswith(".json"):
            seen.add((r.repo, r.role))
            size = "~" + human_size(approx[(r.repo, r.role)])
        else:
            size = "?"
        converted = {None: "-", True: "yes", False: "no"}[r.converted]
        style = _STATE_STYLE.get(r.state, "")
        table.add_row(r.role, f"{r.repo}/{r.path}", size, f"[{style}]{r.state}[/]", converted)
    return table


@weights_app.command("list")
@handle_errors
def list_(
    engines: list[str] = typer.Argument(None, help="Engine ids (default: all)."),
    dir: Path = _DIR,
    lock: Path = _LOCK,
    json: bool = _JSON,
) -> None:
    """Per engine: every file, its size, and whether it is present, verified and converted."""
    from pipelines.weights.lock import read_lock
    from pipelines.weights.manifest import entries
    from pipelines.weights.store import default_weights_dir, human_size, status

    ids = _engines_or_all(engines)
    weights_dir = dir or default_weights_dir()
    the_lock = read_lock(lock)
    rows = status(ids, weights_dir, the_lock)
    if json:
        print_json(
            {
                "weights_dir": str(weights_dir),
                "lock": str(the_lock.path),
                "files": [r.as_dict() for r in rows],
            }
        )
        return
    err_console.print(f"weights dir: {weights_dir}", markup=False, highlight=False)
    for engine_id in ids:
        mine = [r for r in rows if r.engine == engine_id]
        is_locked = the_lock.files(engine_id) is not None
        if is_locked:
            total = human_size(sum(r.expected_size or 0 for r in mine))
        else:
            rough = sum(w.approx_bytes or 0 for w in entries(engine_id))
            total = f"~{human_size(rough)} before conversion" if rough else "sizes known once locked"
        locked = "locked" if is_locked else "not locked"
        err_console.print(_table(mine, f"{engine_id} ({locked}, {total})"))


@weights_app.command("download")
@handle_errors
def download(
    engines: list[str] = typer.Argument(..., help="Engine ids, e.g. latentsync-1.6."),
    dir: Path = _DIR,
    lock: Path = _LOCK,
) -> None:
    """Fetch an engine's files (the locked revisions), check sha256, convert pickles to safetensors once."""
    from pipelines.weights.lock import read_lock
    from pipelines.weights.store import download as do_download

    ids = _engines_or_all(engines)
    report = do_download(ids, dir, read_lock(lock), expected_keys, _say)
    _say(
        f"done: {len(report.downloaded)} downloaded, {len(report.already_present)} already present and verified, "
        f"{len(report.converted)} converted"
    )
    if report.unlocked:
        _say(f"not pinned (no weights.lock entry): {', '.join(report.unlocked)}")


@weights_app.command("verify")
@handle_errors
def verify(
    engines: list[str] = typer.Argument(None, help="Engine ids (default: every locked engine)."),
    dir: Path = _DIR,
    lock: Path = _LOCK,
    json: bool = _JSON,
) -> None:
    """Re-hash every file (offline) against weights.lock; exit 2 if any is corrupted or truncated, 4 if missing."""
    from pipelines.errors import InputError
    from pipelines.weights.lock import read_lock
    from pipelines.weights.store import status

    the_lock = read_lock(lock)
    ids = list(engines) if engines else sorted(the_lock.engines)
    if not ids:
        raise InputError(
            the_lock.path, None, "no engine is locked; a maintainer runs: talkreel weights lock ENGINE"
        )
    _engines_or_all(ids)
    unlocked = [e for e in ids if the_lock.files(e) is None]
    if unlocked:
        raise InputError(
            the_lock.path,
            f"engines.{unlocked[0]}",
            f"not locked, nothing to verify against; a maintainer runs: talkreel weights lock {' '.join(unlocked)}",
        )
    rows = status(ids, dir, the_lock, reread=True)
    bad = [r for r in rows if r.state in ("corrupt", "truncated")]
    missing = [r for r in rows if r.state == "missing"]
    if json:
        print_json({"ok": not bad and not missing, "files": [r.as_dict() for r in rows]})
    else:
        for engine_id in ids:
            err_console.print(_table([r for r in rows if r.engine == engine_id], engine_id))
    for r in bad:
        got = f"sha256 {r.actual_sha256}" if r.actual_sha256 else f"{r.size} bytes"
        want = f"sha256 {r.expected_sha256}" if r.actual_sha256 else f"{r.expected_size} bytes"
        _say(f"error: {r.local}: {r.state}: {got}, expected {want}")
    if bad:
        raise typer.Exit(EXIT_INPUT)
    if missing:
        engines_missing = sorted({r.engine for r in missing})
        _say(
            f"error: {len(missing)} file(s) missing (e.g. {missing[0].local}); "
            f"run: talkreel weights download {' '.join(engines_missing)}"
        )
        raise typer.Exit(EXIT_WEIGHTS)
    if not json:
        _say(f"all {len(rows)} files verified")


@weights_app.command("import")
@handle_errors
def import_(
    engine: str = typer.Argument(..., help="Engine id."),
    paths: list[Path] = typer.Argument(
        ..., help="Folders or files holding the hub files (e.g. an air-gapped copy)."
    ),
    dir: Path = _DIR,
    lock: Path = _LOCK,
) -> None:
    """Take an engine's files from local folders, verify them against the lock, place and convert them."""
    from pipelines.weights.lock import read_lock
    from pipelines.weights.store import import_files

    _engines_or_all([engine])
    report = import_files(engine, paths, dir, read_lock(lock), expected_keys, _say)
    _say(
        f"imported {len(report.placed)}, already present {len(report.already_present)}, "
        f"converted {len(report.converted)}"
    )
    if report.still_missing:
        _say(f"still missing: {', '.join(report.still_missing)}")


@weights_app.command("path")
@handle_errors
def path(
    engine: str = typer.Argument(..., help="Engine id."),
    role: str = typer.Option(None, "--role", help="Print only this role's path (e.g. unet, vae, whisper)."),
    dir: Path = _DIR,
    lock: Path = _LOCK,
    json: bool = _JSON,
) -> None:
    """Where an engine's weights are (exit 4 with the command to run when they are not ready)."""
    from pipelines.errors import InputError
    from pipelines.weights.store import resolve

    paths = resolve(engine, dir, lock)
    if role is not None:
        if role not in paths:
            raise InputError(None, "--role", f"expected one of {', '.join(paths)}")
        paths = {role: paths[role]}
    if json:
        print_json({k: str(v) for k, v in paths.items()})
        return
    for k, v in paths.items():
        typer.echo(str(v) if role else f"{k}\t{v}")


@weights_app.command("lock")
@handle_errors
def lock_(
    engines: list[str] = typer.Argument(..., help="Engine ids to pin."),
    revision: str = typer.Option("main", "--revision", help="Branch or tag to resolve to a commit."),
    lock: Path = _LOCK,
) -> None:
    """(Maintainers) resolve the hub's current commit of each repo and write sizes and sha256 to weights.lock."""
    from pipelines.weights.lock import lock_engines

    ids = _engines_or_all(engines)
    written = lock_engines(ids, lock, revision=revision)
    for engine_id in ids:
        files = written.files(engine_id) or []
        repos = sorted({f"{f.repo}@{f.revision[:12]}" for f in files})
        _say(f"{engine_id}: {len(files)} files pinned ({', '.join(repos)})")
    _say(f"wrote {written.path}")
