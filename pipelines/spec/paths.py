"""Where the files a spec names are: relative paths, the project root, and the outside-root rule.

Paths are resolved while a model validates, through the `SpecContext` the loader passes as pydantic's validation
context, so a bad path is reported at its exact field (`audio.segments.2.file: file not found: ...`). A model
validated without a context (a test, a caller building a Job in Python) keeps its paths as written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

PERSONAS_DIR = "personas"


@dataclass(frozen=True)
class SpecContext:
    """What validation of one file needs to know beyond the file itself."""

    base_dir: Path  # folder of the file being validated: relative paths start here
    root: Path  # project root: no path may escape it unless allow_outside
    allow_outside: bool = False
    # Emotion names a job may use (built-in + its persona's); None skips the check (the persona did not load).
    emotions: frozenset[str] | None = None
    default_engine: Any = None  # the persona's default engine settings, for a job that names none
    job_stem: str | None = None  # default output name: <job file stem>.mp4


def spec_context(info: ValidationInfo) -> SpecContext | None:
    ctx = info.context
    return ctx if isinstance(ctx, SpecContext) else None


def fail(message: str) -> PydanticCustomError:
    """A validation error whose text is `message` exactly (no 'Value error, ' prefix, braces left alone)."""
    return PydanticCustomError("talkreel", "{message}", {"message": message})


def raise_field_errors(title: str, problems: Iterable[tuple[tuple[str | int, ...], str]]) -> None:
    """Raise several errors at once, each at its own field (used by cross-field checks)."""
    details = [InitErrorDetails(type=fail(message), loc=loc, input=None) for loc, message in problems]
    if details:
        raise ValidationError.from_exception_data(title, details)


def merge_errors(
    title: str, exc: ValidationError, problems: Iterable[tuple[tuple[str | int, ...], str]]
) -> ValidationError:
    """`exc`'s errors plus `problems`, each reported once, as one ValidationError."""
    seen: set[tuple[tuple[str | int, ...], str]] = set()
    details = []
    for error in exc.errors(include_url=False):
        key = (tuple(error["loc"]), error["msg"])
        if key not in seen:
            seen.add(key)
            # Keep pydantic's error type: the loader words some types (missing, extra_forbidden) its own way.
            kind = PydanticCustomError(error["type"], "{message}", {"message": error["msg"]})
            details.append(InitErrorDetails(type=kind, loc=tuple(error["loc"]), input=error.get("input")))
    for loc, message in problems:
        if (loc, message) not in seen:
            seen.add((loc, message))
            details.append(InitErrorDetails(type=fail(message), loc=loc, input=None))
    return ValidationError.from_exception_data(title, details)


def project_root(path: Path) -> Path:
    """The nearest ancestor folder of `path` (a file) that has a `personas/` folder, else the file's folder."""
    start = path.resolve().parent
    for folder in (start, *start.parents):
        if (folder / PERSONAS_DIR).is_dir():
            return folder
    return start


def display(path: Path) -> str:
    """A path as a user wants to read it: relative to the working folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def is_inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def resolve_input(value: Path, ctx: SpecContext, *, folder_ok: bool = False) -> Path:
    """Absolute path of an input file named in a spec; raises a validation error naming what is wrong."""
    path = value.expanduser()
    if not path.is_absolute():
        path = ctx.base_dir / path
    path = Path(os.path.normpath(path))
    if not ctx.allow_outside and not is_inside(path, ctx.root):
        raise fail(f"{value} is outside the project root {ctx.root} (use --allow-outside-paths to allow it)")
    if not path.exists():
        raise fail(f"file not found: {path}")
    if path.is_dir() and not folder_ok:
        raise fail(f"expected a file, found a folder: {path}")
    return path


def _input_file(value: Path, info: ValidationInfo) -> Path:
    ctx = spec_context(info)
    return value if ctx is None else resolve_input(value, ctx)


InputFile = Annotated[Path, AfterValidator(_input_file)]
"""A path to an existing input file; relative to the file that names it, inside the project root."""
