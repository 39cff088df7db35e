"""A persona (`personas/<id>/persona.yaml`): whose face, from which source, with whose consent, how disclosed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from pipelines.expression.track import PARAM_RANGES, PARAMS
from pipelines.media.formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES, media_kind
from pipelines.spec.compose import StrictModel
from pipelines.spec.emotion import known_emotions
from pipelines.spec.engines import EngineSettings
from pipelines.spec.media_checks import usable_image
from pipelines.spec.paths import InputFile, fail, raise_field_errors

SourceKind = Literal["image", "video"]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def source_kind(path: Path) -> SourceKind:
    kind = media_kind(path)
    if kind is None:
        raise ValueError(path)
    return kind


def _image_or_video(path: Path) -> Path:
    try:
        kind = source_kind(path)
    except ValueError:
        raise fail(
            f"expected an image ({', '.join(IMAGE_SUFFIXES)}) or a video ({', '.join(VIDEO_SUFFIXES)}), got {path.name!r}"
        ) from None
    return usable_image(path) if kind == "image" else path


MediaFile = Annotated[InputFile, AfterValidator(_image_or_video)]


def _video(path: Path) -> Path:
    if media_kind(path) != "video":
        raise fail(
            f"expected a video ({', '.join(VIDEO_SUFFIXES)}) of the same person talking, got {path.name!r}"
        )
    return path


VideoFile = Annotated[InputFile, AfterValidator(_video)]


class Consent(StrictModel):
    """Who granted the use of this likeness, when, and for what; required for every persona."""

    granted_by: str = Field(
        min_length=1, description="the person (or rights holder) who granted use of the likeness"
    )
    granted_on: dt.date = Field(description="date of the grant (YYYY-MM-DD)")
    scope: str = Field(min_length=1, description="what the likeness may be used for")
    note: str | None = Field(None, description="where the source media comes from and under which licence")

    @field_validator("granted_on")
    @classmethod
    def _not_in_future(cls, day: dt.date) -> dt.date:
        if day > dt.date.today():
            raise fail(f"{day.isoformat()} is in the future")
        return day


class Disclosure(StrictModel):
    """The visible label on every output of this persona."""

    label: bool = Field(True, description="show the label; only an explicit false turns it off")
    text: str = Field("AI-generated", min_length=1)
    position: Literal["top-left", "top-right", "bottom-left", "bottom-right"] = "bottom-right"


class FacePick(StrictModel):
    """Which face of several is the persona's: by `index` (0 = the largest) or by a point (of a photo, or of a
    video's first frame with a face; the person is followed through the video from there)."""

    index: int | None = Field(None, ge=0, description="0 = the largest face, 1 = the next largest, ...")
    x: float | None = Field(
        None, ge=0, le=1, description="a point on the face, as a fraction of the image width"
    )
    y: float | None = Field(None, ge=0, le=1, description="... and of the image height")

    @model_validator(mode="after")
    def _one_way(self) -> FacePick:
        by_point = self.x is not None or self.y is not None
        if (self.index is not None) == by_point or by_point and (self.x is None or self.y is None):
            raise_field_errors("FacePick", [((), "give either index, or both x and y")])
        return self


class Persona(StrictModel):
    name: str = Field(min_length=1, description="display name (title cards, lower thirds)")
    source: MediaFile = Field(description="face photo or short video, relative to this file")
    looks: dict[str, MediaFile] = Field(
        default_factory=dict, description="per-emotion source clips or photos: {emotion: path}"
    )
    emotions: dict[str, dict[str, FiniteFloat]] = Field(
        default_factory=dict,
        description="emotions this persona adds or redefines: {name: {param: value}}; params and their ranges: "
        + ", ".join(f"{p} {lo:g}..{hi:g}" for p, (lo, hi) in PARAM_RANGES.items())
        + " (head angles in degrees)",
    )
    engine: EngineSettings | None = Field(None, description="default engine of this persona's jobs")
    face: FacePick | None = Field(
        None,
        description="for a source with several faces: which is the persona's (default: the largest); in a video, "
        "picked on the first frame with a face and followed through the footage. Every engine follows it (looks "
        "take their largest face)",
    )
    loop: Literal["pingpong", "repeat", "hold"] = Field(
        "pingpong",
        description="a video source shorter than the speech: play it back and forth (pingpong), start it over "
        "(repeat) or keep its last frame (hold); the preview, LatentSync and MuseTalk engines follow it (the "
        "EchoMimic engines use a video's first frame as their photo). The record and the batch say when it happened",
    )
    poses: InputFile | None = Field(
        None,
        description="hand-pose track (.npz, written by `talkreel personas poses`) for the half-body engine "
        "echomimic-v2; without one it generates hands at rest",
    )
    mouths: VideoFile | None = Field(
        None,
        description="photo personas: a short video of the same person talking, whose mouths (teeth, tongue, lips) "
        "the preview engine uses for the photo instead of a painted interior; the model engines draw their own",
    )
    consent: Consent
    disclosure: Disclosure = Field(default_factory=Disclosure)

    @property
    def source_kind(self) -> SourceKind:
        return source_kind(self.source)

    def face_media(self) -> dict[str, Path]:
        """Every picture of the face by field name (source, looks.<emotion>, mouths): what the face check reads."""
        media = {"source": self.source} | {f"looks.{k}": v for k, v in self.looks.items()}
        return media | ({"mouths": self.mouths} if self.mouths is not None else {})

    def known_emotions(self) -> frozenset[str]:
        return known_emotions(self.emotions)

    @field_validator("emotions")
    @classmethod
    def _known_params(cls, emotions: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        problems = []
        for name, values in emotions.items():
            for param, value in values.items():
                if param not in PARAMS:
                    problems.append(
                        ((name, param), f"unknown expression parameter; known: {', '.join(PARAMS)}")
                    )
                    continue
                lo, hi = PARAM_RANGES[param]
                if not lo <= value <= hi:
                    problems.append(((name, param), f"expected {lo:g}..{hi:g}, got {value:g}"))
        raise_field_errors("Persona.emotions", problems)
        return emotions

    @model_validator(mode="after")
    def _looks_are_emotions(self) -> Persona:
        known = self.known_emotions()
        raise_field_errors(
            "Persona",
            [
                (("looks", name), f"unknown emotion {name!r}; known: {', '.join(sorted(known))}")
                for name in self.looks
                if name not in known
            ],
        )
        if self.mouths is not None and self.source_kind == "video":
            raise_field_errors(
                "Persona",
                [(("mouths",), "only for a photo source (a video persona speaks with its own mouths)")],
            )
        return self
