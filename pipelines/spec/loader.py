"""Load and validate a batch of job files (and the personas they use), collecting every error of every file.

A broken job never stops the others from loading: each error becomes an `InputError(file, field, message)` and
the valid jobs are returned next to them. Files named `persona.yaml` given directly (or found in a folder) are
validated as personas.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from pipelines.errors import InputError
from pipelines.spec.audio import FileAudio, SegmentsAudio
from pipelines.spec.compose import Theme
from pipelines.spec.engines import ENGINE_NAMES
from pipelines.spec.job import Job
from pipelines.spec.paths import PERSONAS_DIR, SpecContext, display, project_root, resolve_input
from pipelines.spec.persona import Persona

PERSONA_FILE = "persona.yaml"
SPEC_SUFFIXES = (".yaml", ".yml")
_PERSONA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class LoadedPersona:
    persona: Persona
    path: Path  # the persona.yaml

    @property
    def dir(self) -> Path:
        return self.path.parent

    @property
    def id(self) -> str:
        return self.path.parent.name


@dataclass(frozen=True)
class LoadedJob:
    job: Job  # paths resolved, engine and output.path filled in
    job_path: Path
    persona: Persona
    persona_dir: Path
    project_root: Path
    # The persona's YAML file: persona_dir / persona.yaml unless the job names another file.
    persona_file: Path
    theme: Theme | None = None  # the validated theme file the job names (job.theme), paths resolved

    @property
    def persona_id(self) -> str:
        return self.persona_dir.name

    def input_files(self) -> list[Path]:
        """Every file this job reads (audio, persona media, composition files): what its content hash covers."""
        job, persona = self.job, self.persona
        files = [self.job_path, self.persona_file, *persona.face_media().values()]
        if persona.poses is not None:
            files.append(persona.poses)
        if isinstance(job.audio, SegmentsAudio):
            files += job.audio.files()
        elif isinstance(job.audio, FileAudio):
            files.append(job.audio.file)
        files += [p for p in (job.question_audio, job.theme) if p is not None]
        if isinstance(job.layout.background, Path):
            files.append(job.layout.background)
        if self.theme is not None:
            theme = self.theme
            files += [
                p for p in (theme.font, theme.font_bold, theme.logo, theme.background_image) if p is not None
            ]
        return files


@dataclass
class Batch:
    jobs: list[LoadedJob] = field(default_factory=list)
    personas: list[LoadedPersona] = field(default_factory=list)  # every persona that loaded, once
    files: list[Path] = field(default_factory=list)  # every spec file found (jobs and persona files)
    errors: list[InputError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# --- errors -------------------------------------------------------------------------------------------------------

_UNION_TAGS = {
    "engine": set(ENGINE_NAMES),
    "audio": {"file", "segments", "text"},
    "segment": {"file", "pause"},
}
_OWN_MESSAGES = {"talkreel", "audio_form", "segment_form", "missing", "extra_forbidden"}


def _clean_loc(loc: Sequence[Any]) -> list[Any]:
    """Drop the union tags pydantic puts into error locations (`engine.latentsync-1.6.steps` -> `engine.steps`)."""
    out: list[Any] = []
    expect: set[str] | None = None
    for part in loc:
        if expect is not None and part in expect:
            expect = None
            continue
        expect = None
        out.append(part)
        if len(out) == 1 and part in ("engine", "audio"):
            expect = _UNION_TAGS[part]
        elif len(out) == 3 and out[:2] == ["audio", "segments"] and isinstance(part, int):
            expect = _UNION_TAGS["segment"]
    return out


def _message(error: dict[str, Any], model: type[BaseModel], loc: list[Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        if len(loc) == 1:
            return f"unknown field; known: {', '.join(sorted(model.model_fields))}"
        return "unknown field"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if kind not in _OWN_MESSAGES and isinstance(value, str | int | float | bool):
        message = f"{message}, got {value!r}"
    return message


def validation_errors(file: Path, exc: ValidationError, model: type[BaseModel]) -> list[InputError]:
    errors = []
    for error in exc.errors(include_url=False):
        loc = _clean_loc(error["loc"])
        errors.append(
            InputError(display(file), ".".join(str(p) for p in loc) or None, _message(error, model, loc))
        )
    return errors


# A spec is a few kilobytes; these bounds keep a hostile or mistaken file (a 50 MB dump, 10000 nested
# brackets) to a prompt one-line error instead of minutes of parsing or a RecursionError that stops the batch.
MAX_SPEC_BYTES = 256 * 1024
MAX_SPEC_DEPTH = 32

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~15x faster where installed


class _StrictLoader(_SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (give each field once)", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _too_deep(text: str) -> str | None:
    """A message when the YAML nests deeper than MAX_SPEC_DEPTH (checked on the event stream, which is flat,
    before the recursive composer sees it)."""
    depth = 0
    for event in yaml.parse(text, Loader=_SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                mark = event.start_mark
                return f"line {mark.line + 1}: nested deeper than {MAX_SPEC_DEPTH} levels"
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def _parse_yaml(text: str) -> Any:
    problem = _too_deep(text)
    if problem:
        raise InputError(None, None, f"invalid YAML: {problem}")
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_spec(path: Path, empty_ok: bool = False) -> dict[str, Any]:
    """The mapping in a YAML spec file; raises InputError naming the file and what is wrong."""
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise InputError(
                display(path), None, f"{size} bytes; a spec file may be at most {MAX_SPEC_BYTES} bytes"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(display(path), None, f"cannot read: {exc}") from None
    try:
        data = _parse_yaml(text)
    except InputError as exc:
        raise InputError(display(path), None, exc.message) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(display(path), None, f"invalid YAML: {where}{problem}") from None
    if data is None:
        if empty_ok:
            return {}
        raise InputError(display(path), None, "empty file; expected a mapping of fields")
    if not isinstance(data, dict):
        raise InputError(display(path), None, f"expected a mapping of fields, got a {type(data).__name__}")
    return data


# --- personas -----------------------------------------------------------------------------------------------------


class _FileCache:
    """Each persona (or theme) file is validated, and its errors reported, once per batch."""

    def __init__(self, model: type[BaseModel], allow_outside: bool, empty_ok: bool = False):
        self.model = model
        self.allow_outside = allow_outside
        self.empty_ok = empty_ok  # an empty theme file means the defaults; an empty persona is a mistake
        self.loaded: dict[Path, tuple[Any, Path] | None] = {}
        self.errors: list[InputError] = []

    def get(self, path: Path, root: Path) -> tuple[Any, Path] | None:
        """(model, absolute path) or None when the file has errors (they are in `self.errors`)."""
        key = path.resolve()
        if key not in self.loaded:
            self.loaded[key] = self._load(path, root)
        return self.loaded[key]

    def _load(self, path: Path, root: Path) -> tuple[Any, Path] | None:
        try:
            data = read_spec(path, empty_ok=self.empty_ok)
        except InputError as exc:
            self.errors.append(exc)
            return None
        # Absolute but not resolved: a symlinked persona folder keeps its own name as the id.
        path = Path(os.path.abspath(path))
        ctx = SpecContext(base_dir=path.parent, root=root, allow_outside=self.allow_outside)
        try:
            return self.model.model_validate(data, context=ctx), path
        except ValidationError as exc:
            self.errors.extend(validation_errors(path, exc, self.model))
            return None


class _PersonaCache(_FileCache):
    def __init__(self, allow_outside: bool):
        super().__init__(Persona, allow_outside)

    def persona(self, path: Path, root: Path) -> LoadedPersona | None:
        found = self.get(path, root)
        return LoadedPersona(*found) if found else None

    def all(self) -> list[LoadedPersona]:
        return [LoadedPersona(*found) for found in self.loaded.values() if found]


def persona_path(ref: str, job_path: Path, root: Path, allow_outside: bool) -> Path:
    """The persona.yaml a job's `persona` names: an id under <root>/personas/, else a path (file or folder)."""
    if _PERSONA_ID.fullmatch(ref) and not ref.endswith(SPEC_SUFFIXES):
        path = root / PERSONAS_DIR / ref / PERSONA_FILE
        if path.is_file():
            return path
        raise InputError(
            display(job_path),
            "persona",
            f"unknown persona {ref!r}: no {display(path)}; known: {', '.join(persona_ids(root)) or 'none'}",
        )
    ctx = SpecContext(base_dir=job_path.resolve().parent, root=root, allow_outside=allow_outside)
    try:
        path = resolve_input(Path(ref), ctx, folder_ok=True)
    except PydanticCustomError as exc:
        raise InputError(display(job_path), "persona", exc.message()) from None
    if path.is_dir():
        path = path / PERSONA_FILE
        if not path.is_file():
            raise InputError(display(job_path), "persona", f"file not found: {path}")
    return path


def persona_ids(root: Path) -> list[str]:
    """Ids of the personas under <root>/personas/ (folders with a persona.yaml), sorted."""
    folder = root / PERSONAS_DIR
    if not folder.is_dir():
        return []
    return sorted(d.name for d in folder.iterdir() if (d / PERSONA_FILE).is_file())


def load_persona(path_or_dir: str | Path, allow_outside_paths: bool = False) -> Persona:
    """Load one persona (its persona.yaml or its folder); raises InputError on the first problem found."""
    return load_persona_file(path_or_dir, allow_outside_paths).persona


def load_persona_file(path_or_dir: str | Path, allow_outside_paths: bool = False) -> LoadedPersona:
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / PERSONA_FILE
    if not path.is_file():
        raise InputError(display(path), None, "file not found")
    cache = _PersonaCache(allow_outside_paths)
    loaded = cache.persona(path, project_root(path))
    if loaded is None:
        first, more = cache.errors[0], len(cache.errors) - 1
        if more:
            raise InputError(
                first.file, first.field, f"{first.message} (and {more} more; see talkreel validate)"
            )
        raise first
    return loaded


# --- jobs ---------------------------------------------------------------------------------------------------------


def spec_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[InputError]]:
    """Files and folders -> spec files (a folder: every *.yaml / *.yml directly inside, sorted), in order, once."""
    files: list[Path] = []
    errors: list[InputError] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file())
            if not found:
                errors.append(InputError(display(path), None, "no *.yaml or *.yml files in this folder"))
        elif path.is_file():
            found = [path]
        else:
            errors.append(InputError(display(path), None, "no such file or folder"))
            found = []
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    return files, errors


def load_batch(paths: Sequence[str | Path], allow_outside_paths: bool = False) -> Batch:
    """Load every job (and persona file) under `paths`; all errors of all files end up in `Batch.errors`."""
    batch = Batch()
    files, batch.errors = spec_files(paths)
    batch.files = files
    personas = _PersonaCache(allow_outside_paths)
    themes = _FileCache(Theme, allow_outside_paths, empty_ok=True)
    job_errors: list[InputError] = []
    for path in files:
        if path.name in (PERSONA_FILE, "persona.yml"):
            personas.persona(path, project_root(path))
            continue
        try:
            batch.jobs.append(_load_job(path, personas, themes, allow_outside_paths))
        except _JobErrors as exc:
            job_errors.extend(exc.errors)
    batch.errors.extend(personas.errors)
    batch.errors.extend(themes.errors)
    batch.errors.extend(job_errors)
    batch.errors.extend(_duplicate_outputs(batch.jobs))
    failed = {e.file for e in batch.errors}
    batch.jobs = [j for j in batch.jobs if display(j.job_path) not in failed]
    batch.personas = personas.all()
    return batch


class _JobErrors(Exception):
    def __init__(self, errors: list[InputError]):
        self.errors = errors


def _load_job(path: Path, personas: _PersonaCache, themes: _FileCache, allow_outside: bool) -> LoadedJob:
    try:
        data = read_spec(path)
    except InputError as exc:
        raise _JobErrors([exc]) from None
    root = project_root(path)
    errors: list[InputError] = []
    loaded_persona: LoadedPersona | None = None
    ref = data.get("persona")
    if isinstance(ref, str) and ref:
        try:
            loaded_persona = personas.persona(persona_path(ref, path, root, allow_outside), root)
        except InputError as exc:
            errors.append(exc)
        else:
            if loaded_persona is None:
                errors.append(
                    InputError(display(path), "persona", f"persona {ref!r} has errors (listed above)")
                )
    persona = loaded_persona.persona if loaded_persona else None
    ctx = SpecContext(
        base_dir=path.resolve().parent,
        root=root,
        allow_outside=allow_outside,
        emotions=persona.known_emotions() if persona else None,
        default_engine=persona.engine if persona else None,
        job_stem=path.stem,
    )
    try:
        job = Job.model_validate(data, context=ctx)
    except ValidationError as exc:
        errors.extend(validation_errors(path, exc, Job))
    theme: Theme | None = None
    if not errors and job.theme is not None:
        found = themes.get(job.theme, root)
        if found is None:
            errors.append(
                InputError(display(path), "theme", f"theme {display(job.theme)} has errors (listed above)")
            )
        else:
            theme = found[0]
    if errors or loaded_persona is None:
        raise _JobErrors(errors or [InputError(display(path), "persona", "persona did not load")])
    return LoadedJob(
        job, path.resolve(), loaded_persona.persona, loaded_persona.dir, root, loaded_persona.path, theme
    )


def _duplicate_outputs(jobs: list[LoadedJob]) -> list[InputError]:
    first: dict[Path, LoadedJob] = {}
    errors = []
    for loaded in jobs:
        out = Path(str(loaded.job.output.path))
        if out in first:
            errors.append(
                InputError(
                    display(loaded.job_path),
                    "output.path",
                    f"{out} is also the output of {display(first[out].job_path)}",
                )
            )
        else:
            first[out] = loaded
    return errors
