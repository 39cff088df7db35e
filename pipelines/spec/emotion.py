"""The emotion track of a job: which emotion, how strongly, from when to when.

Known emotion names are the built-in presets (pipelines.expression.emotions) plus the persona's own `emotions`;
the loader passes that set through the validation context.
"""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipelines.expression.emotions import BUILTIN_EMOTIONS
from pipelines.spec.compose import StrictModel
from pipelines.spec.paths import fail, raise_field_errors, spec_context


class EmotionEntry(StrictModel):
    start: float = Field(ge=0, description="seconds from the start of the audio")
    end: float | None = Field(None, description="seconds; omitted: until the next entry starts (or the end)")
    emotion: str = Field(min_length=1, description="a built-in emotion or one of the persona's own")
    intensity: float = Field(1.0, ge=0, le=1)

    @field_validator("emotion")
    @classmethod
    def _known(cls, name: str, info: ValidationInfo) -> str:
        ctx = spec_context(info)
        if ctx is not None and ctx.emotions is not None and name not in ctx.emotions:
            raise fail(f"unknown emotion {name!r}; known: {', '.join(sorted(ctx.emotions))}")
        return name

    @model_validator(mode="after")
    def _end_after_start(self) -> EmotionEntry:
        if self.end is not None and self.end <= self.start:
            raise_field_errors("EmotionEntry", [(("end",), end_before_start(self.start, self.end))])
        return self


def known_emotions(persona_emotions: dict[str, object] | None = None) -> frozenset[str]:
    return frozenset(BUILTIN_EMOTIONS) | frozenset(persona_emotions or ())


def end_before_start(start: float, end: float) -> str:
    return f"must be after start ({start:g}), got {end:g}"
