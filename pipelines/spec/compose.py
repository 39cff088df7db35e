"""Composition fields of a job: what turns a rendered clip into an intro, a summary or an FAQ answer.

`Job` (pipelines.spec.job) inherits `CompositionFields`, so these are top-level keys of a job file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.spec.media_checks import FontFile, ImageFile


class StrictModel(BaseModel):
    # No infinite or NaN numbers anywhere in a spec (`start: .inf` is a typo, never a time).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Card(StrictModel):
    """A full-frame text card (title, closing, question)."""

    text: str
    subtitle: str | None = None
    duration: float = Field(3.0, gt=0, le=30, description="seconds on screen")


class LowerThird(StrictModel):
    """A chapter title or bullet shown over the clip from `at` for `duration` seconds."""

    at: float = Field(ge=0)
    text: str
    duration: float = Field(4.0, gt=0)


class Captions(StrictModel):
    srt: bool = True
    vtt: bool = True
    burn_in: bool = False


class Layout(StrictModel):
    mode: Literal["full", "pip"] = "full"
    aspect: Literal["16:9", "9:16", "1:1"] | None = None
    background: str | Path | None = Field(None, description="colour (#rrggbb) or image path")
    position: Literal["left", "right", "center", "bottom-left", "bottom-right"] = "center"
    scale: float = Field(0.6, gt=0.1, le=1.0, description="PiP height as a share of the frame height")


class CompositionFields(StrictModel):
    title: Card | None = None  # intro: opening title card
    closing: Card | None = None  # intro: optional closing card
    chapters: list[LowerThird] = Field(default_factory=list)  # summary: lower thirds
    question: Card | None = None  # faq: the question card + caption banner
    question_audio: Path | None = None  # faq: the question spoken by a second voice
    captions: Captions = Field(default_factory=Captions)
    layout: Layout = Field(default_factory=Layout)
    theme: Path | None = None  # brand/theme file shared by many jobs


Colour = Annotated[
    str, Field(pattern=r"^#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$", description="#rrggbb or #rrggbbaa")
]
LabelPosition = Literal["top-left", "top-right", "bottom-left", "bottom-right"]


class ThemeColours(StrictModel):
    background: Colour = "#14161f"
    text: Colour = "#ffffff"
    accent: Colour = "#f2aa4c"
    panel: Colour = Field("#000000b4", description="lower thirds, question banner and burned-in captions")
    label_text: Colour = "#ffffff"
    label_panel: Colour = "#00000099"


class ThemeLabel(StrictModel):
    """The brand's default disclosure label; a persona's own `disclosure` text/position wins over it."""

    text: str | None = Field(None, min_length=1)
    position: LabelPosition | None = None


class Theme(StrictModel):
    """A brand/theme file (YAML) shared by many jobs: fonts, colours, logo, background image."""

    font: FontFile | None = Field(
        None, description="TrueType/OpenType file for body text; default: bundled DejaVu Sans"
    )
    font_bold: FontFile | None = Field(None, description="for headings; default: bundled DejaVu Sans Bold")
    colours: ThemeColours = Field(default_factory=ThemeColours)
    logo: ImageFile | None = Field(None, description="PNG (alpha kept) shown on title and closing cards")
    background_image: ImageFile | None = Field(None, description="image behind cards and picture-in-picture")
    label: ThemeLabel = Field(default_factory=ThemeLabel)
    crossfade: float = Field(0.5, ge=0, le=3, description="seconds of cross-fade between a card and the clip")
