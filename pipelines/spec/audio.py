"""The `audio` of a job: a recorded file, segments joined with pauses, or draft text for espeak-ng.

Accepted forms (all normalised to one of the models below):
- `audio: take1.wav` or `audio: {file: take1.wav}`
- `audio: {segments: [{file: a.wav}, {pause: 0.5}, {file: b.wav}]}`
- `audio: {text: "Hello there", voice: en}` (synthesised by espeak-ng; a draft before the voice is recorded)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator

from pipelines.spec.compose import StrictModel
from pipelines.spec.paths import InputFile, fail

AUDIO_FORMS = (
    "a file path, {file: path}, {segments: [{file: path} | {pause: seconds}, ...]} or {text: ..., voice: en}"
)


class FileAudio(StrictModel):
    file: InputFile = Field(description="audio file in any format ffmpeg reads")


class FileSegment(StrictModel):
    file: InputFile


class PauseSegment(StrictModel):
    pause: float = Field(gt=0, le=60, description="seconds of silence")


def _segment_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "file" in value:
            return "file"
        if "pause" in value:
            return "pause"
    if isinstance(value, FileSegment):
        return "file"
    if isinstance(value, PauseSegment):
        return "pause"
    return None


Segment = Annotated[
    Union[Annotated[FileSegment, Tag("file")], Annotated[PauseSegment, Tag("pause")]],  # noqa: UP007
    Discriminator(
        _segment_tag,
        custom_error_type="segment_form",
        custom_error_message="expected {file: path} or {pause: seconds}",
    ),
]


class SegmentsAudio(StrictModel):
    segments: list[Segment] = Field(min_length=1, description="played in order")

    def files(self) -> list[Path]:
        return [s.file for s in self.segments if isinstance(s, FileSegment)]


class TextAudio(StrictModel):
    text: str = Field(min_length=1, description="text to synthesise with espeak-ng (draft speech)")
    voice: str = Field("en", min_length=1, description="espeak-ng voice, e.g. en, en-us, fr, de, it")

    @field_validator("text")
    @classmethod
    def _has_words(cls, text: str) -> str:
        if not text.strip():
            raise fail("expected words to speak, got only whitespace")
        return text


_FORMS = {"file": FileAudio, "segments": SegmentsAudio, "text": TextAudio}


def _audio_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        found = [key for key in _FORMS if key in value]
        return found[0] if len(found) == 1 else None
    for tag, model in _FORMS.items():
        if isinstance(value, model):
            return tag
    return None


def _bare_file(value: Any) -> Any:
    return {"file": value} if isinstance(value, str) else value


AudioSpec = Annotated[
    Union[  # noqa: UP007
        Annotated[FileAudio, Tag("file")],
        Annotated[SegmentsAudio, Tag("segments")],
        Annotated[TextAudio, Tag("text")],
    ],
    Discriminator(_audio_tag, custom_error_type="audio_form", custom_error_message=f"expected {AUDIO_FORMS}"),
    BeforeValidator(_bare_file, json_schema_input_type=Union[str, FileAudio, SegmentsAudio, TextAudio]),  # noqa: UP007
]
