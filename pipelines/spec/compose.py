"""Composition fields of a job: what turns a rendered clip into an intro, a summary or an FAQ answer.

`Job` (pipelines.spec.job) inherits `CompositionFields`, so these are top-level keys of a job file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
