"""Loading a brand/theme file: YAML validated by `pipelines.spec.compose.Theme`, paths relative to the file."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from pipelines.errors import InputError
from pipelines.spec.compose import Theme
from pipelines.spec.paths import SpecContext


def load_theme(path: Path | None) -> Theme:
    """The theme in `path`, or the built-in defaults when the job names none."""
    if path is None:
        return Theme()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(path, "theme", f"cannot read the theme file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InputError(path, None, f"not valid YAML ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(path, None, f"expected a mapping of theme keys, got {type(data).__name__}")
    base = Path(path).resolve().parent
    # The job already allowed the theme file itself; what it names is resolved next to it.
    context = SpecContext(base_dir=base, root=base, allow_outside=True)
    try:
        return Theme.model_validate(data, context=context)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InputError(path, field, f"{first['msg']}{more}") from None
