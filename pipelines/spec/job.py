"""A job: which persona says which audio with which emotions, rendered by which engine into what.

Cross-field rules (one table, `KIND_FIELDS`): the composition fields belong to one kind each (title/closing:
intro, chapters: summary, question/question_audio: faq) and a field set for another kind is an error rather than
silently ignored; an faq needs its `question`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipelines.media.formats import IMAGE_SUFFIXES
from pipelines.spec.audio import AudioSpec, TextAudio
from pipelines.spec.compose import CompositionFields, Layout, StrictModel
from pipelines.spec.emotion import EmotionEntry, end_before_start
from pipelines.spec.engines import EngineSettings, PreviewSettings
from pipelines.spec.media_checks import usable_image
from pipelines.spec.paths import fail, merge_errors, raise_field_errors, resolve_input, spec_context

Kind = Literal["intro", "summary", "faq"]
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]
KINDS: tuple[str, ...] = Kind.__args__
# Filesystems allow 255 bytes a name; talkreel's temporary names add ~40 (".<stem>.<pid>-<id>.part.mp4").
MAX_NAME_BYTES = 200

# field -> the one kind that uses it
KIND_FIELDS: dict[str, Kind] = {
    "title": "intro",
    "closing": "intro",
    "chapters": "summary",
    "question": "faq",
    "question_audio": "faq",
}


class Output(StrictModel):
    path: Path | None = Field(
        None,
        description="MP4 file, relative to the output folder (render --out); default: <job file stem>.mp4",
    )
    fps: int = Field(25, ge=1, le=60)
    size: tuple[int, int] | None = Field(
        None, description="[width, height], even numbers; default: the engine's natural framing"
    )
    crf: int = Field(18, ge=0, le=51, description="H.264 quality (lower is better, 18 is visually lossless)")
    preset: X264Preset | None = Field(
        None,
        description=(
            "x264 speed/size trade-off; default: veryfast for the preview engine (drafts; with superfast's motion"
            " search: me=dia, subme=1, partitions=i8x8,i4x4), medium otherwise"
        ),
    )

    @field_validator("path")
    @classmethod
    def _mp4_under_out_dir(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is None:
            return None
        if path.suffix.lower() != ".mp4":
            raise fail(f"expected a .mp4 file name, got {str(path)!r}")
        too_long = [part for part in path.parts if len(part.encode()) > MAX_NAME_BYTES]
        if too_long:
            raise fail(
                f"{too_long[0][:40]}... is {len(too_long[0].encode())} bytes long; file and folder names may "
                f"be at most {MAX_NAME_BYTES} bytes (the filesystem's limit, less room for temporary names)"
            )
        ctx = spec_context(info)
        escapes = path.is_absolute() or ".." in path.parts
        if escapes and ctx is not None and not ctx.allow_outside:
            raise fail(
                f"{path} leaves the output folder; use a relative path without '..' "
                "(or --allow-outside-paths)"
            )
        return path

    @field_validator("size")
    @classmethod
    def _even(cls, size: tuple[int, int] | None) -> tuple[int, int] | None:
        if size is None:
            return None
        width, height = size
        if not (16 <= width <= 4096 and 16 <= height <= 4096):
            raise fail(f"width and height must be within 16..4096, got {width}x{height}")
        if width % 2 or height % 2:
            raise fail(f"width and height must be even (H.264 yuv420p), got {width}x{height}")
        return size


class Job(CompositionFields):
    kind: Kind
    persona: str = Field(
        min_length=1,
        description="id of a folder personas/<id>/ under the project root, or a path to a persona.yaml or its folder",
    )
    audio: AudioSpec
    script: str | None = Field(
        None,
        min_length=1,
        description="text of the recorded audio (alignment, captions); not with text audio",
    )
    emotion: list[EmotionEntry] = Field(default_factory=list, description="emotion track, sorted by start")
    engine: EngineSettings | None = Field(
        None, description="omitted: the persona's default engine, else preview"
    )
    output: Output = Field(default_factory=Output)
    seed: int = Field(0, ge=0, lt=2**63)

    @field_validator("question_audio", "theme")
    @classmethod
    def _composition_file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        ctx = spec_context(info)
        return path if path is None or ctx is None else resolve_input(path, ctx)

    @field_validator("layout")
    @classmethod
    def _background_file(cls, layout: Layout, info: ValidationInfo) -> Layout:
        ctx = spec_context(info)
        background = layout.background
        # A background is a colour (#rrggbb, left to the compositor) or an image file, told apart by its suffix.
        if ctx is None or background is None or Path(str(background)).suffix.lower() not in IMAGE_SUFFIXES:
            return layout
        try:
            resolved = usable_image(resolve_input(Path(str(background)), ctx))
        except PydanticCustomError as exc:
            raise_field_errors("Layout", [(("background",), exc.message())])
        return layout.model_copy(update={"background": resolved})

    @model_validator(mode="wrap")
    @classmethod
    def _cross_fields(cls, data: Any, handler: ModelWrapValidatorHandler[Job], info: ValidationInfo) -> Job:
        # Cross-field rules read the raw mapping, so they are reported together with the field errors
        # instead of only once every field is valid.
        problems = _cross_field_problems(data) if isinstance(data, dict) else []
        try:
            job = handler(data)
        except ValidationError as exc:
            raise merge_errors("Job", exc, problems) from None
        raise_field_errors("Job", problems)

        ctx = spec_context(info)
        if job.engine is None:
            job.engine = (ctx.default_engine if ctx else None) or PreviewSettings()
        if job.output.path is None and ctx is not None and ctx.job_stem:
            job.output.path = Path(f"{ctx.job_stem}.mp4")
        return job


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _field(entry: Any, name: str) -> Any:
    return entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)


def _cross_field_problems(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    kind = data.get("kind")
    if kind in KINDS:
        for name, owner in KIND_FIELDS.items():
            if data.get(name) and kind != owner:
                problems.append(((name,), f"only {owner} jobs use {name}; this job's kind is {kind}"))
    if kind == "faq" and not data.get("question"):
        problems.append((("question",), "an faq job needs a question: {text: ...}"))
    audio = data.get("audio")
    is_text = isinstance(audio, TextAudio) or isinstance(audio, dict) and "text" in audio
    if data.get("script") is not None and is_text:
        problems.append((("script",), "text audio already has its text; script is for recorded audio"))
    captions = data.get("captions")
    if isinstance(captions, dict) and captions.get("burn_in") is True and audio is not None and not is_text:
        if not data.get("script"):
            problems.append(
                (
                    ("captions", "burn_in"),
                    "captions of recorded audio come from its script: add `script:` with the words spoken",
                )
            )
    entries = data.get("emotion")
    if isinstance(entries, list):
        previous: float | None = None
        for i, entry in enumerate(entries):
            start, end = _number(_field(entry, "start")), _number(_field(entry, "end"))
            if start is not None and end is not None and end <= start:
                problems.append((("emotion", i, "end"), end_before_start(start, end)))
            if start is not None and previous is not None and start <= previous:
                problems.append(
                    (
                        ("emotion", i, "start"),
                        f"entries must be sorted by start: {start:g} is not after {previous:g}",
                    )
                )
            previous = start if start is not None else previous
    return problems
