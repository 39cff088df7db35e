"""One entry point: `plan_composition(...)` turns a job's composition fields into a `CompositionPlan`.

The plan knows the output timeline before any frame exists (cards, clip offset, total frame count), writes the
output audio for that timeline, and `plan.frames(clip_frames, start)` streams the final frames one at a time, from
any output frame (a resumed render starts mid-way; `plan.clip_start(start)` says which clip frame it needs first): card
images (rendered once), cross-fades, the clip placed full-frame or picture-in-picture, lower thirds, the FAQ
question banner, burned-in captions and the visible label. The invisible watermark is the encoder's (`plan.watermark`
handed to the SegmentWriter: it marks each frame's chroma on the way into x264). Nothing holds more than a
few frames, so memory does not grow with the clip's length.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.compose.audio_timeline import AudioSegment, write_timeline
from pipelines.compose.captions import (
    LINE_CHARS,
    Cue,
    group_cues,
    line_chars_for,
    timed_tokens,
    write_srt,
    write_vtt,
)
from pipelines.compose.cards import CardText, render_card
from pipelines.compose.fonts import default_font_path, layout_engine_name, load_font
from pipelines.compose.layout import Placement, background, output_size, plan_placement
from pipelines.compose.overlays import Overlay, text_panel
from pipelines.compose.text import TextStyle, parse_colour
from pipelines.compose.theme import load_theme
from pipelines.errors import InputError, RenderError
from pipelines.provenance.label import LabelSpec, label_overlay, resolve_label
from pipelines.provenance.watermark import DEFAULT_CHANNEL, DEFAULT_SCALE, METHOD, Watermarker
from pipelines.spec.compose import CompositionFields, Theme
from pipelines.spec.persona import Disclosure
from pipelines.speech.track import Speech

FADE_SECONDS = 0.25  # fade in/out of lower thirds
QUESTION_AUDIO_TAIL = 0.6  # seconds of card after the spoken question ends


@dataclass(frozen=True)
class CardSegment:
    name: str  # title | closing | question
    first_frame: int
    n_frames: int
    image: np.ndarray
    fade_in: int  # frames blending from the previous picture at the card's start
    fade_out: int  # frames blending into the next picture at the card's end


@dataclass(frozen=True)
class TimedOverlay:
    start: float  # seconds on the output timeline
    end: float
    overlay: Overlay
    fade: float = 0.0

    def opacity(self, t: float) -> float:
        if not self.start <= t < self.end:
            return 0.0
        if self.fade <= 0:
            return 1.0
        return float(min(1.0, (t - self.start) / self.fade, (self.end - t) / self.fade))


@dataclass
class CompositionPlan:
    size: tuple[int, int]
    fps: float
    n_frames: int
    clip_offset: int  # output frame index of the clip's first frame
    clip_frames: int
    captions: list[Cue]  # on the output timeline
    wm_id: str
    record: dict[str, Any]
    _audio_path: Path  # where write_audio() writes the output's audio when it is more than the clip's
    _audio: list[AudioSegment] = field(repr=False, default_factory=list)
    _cards: list[CardSegment] = field(repr=False, default_factory=list)
    _placement: Placement | None = field(repr=False, default=None)
    _timed: list[TimedOverlay] = field(repr=False, default_factory=list)  # lower thirds, banner
    _caption_style: tuple | None = field(repr=False, default=None)
    _label: Overlay | None = field(repr=False, default=None)
    _cached_cue: tuple = field(repr=False, default=(None, None))  # (cue, its rendered panel)

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    @property
    def watermark(self) -> Watermarker:
        """The invisible watermark of this output, for the encoder to embed (`SegmentWriter(watermark=...)`)."""
        return Watermarker(self.wm_id)

    def write_audio(self) -> Path:
        """The output's audio (48 kHz mono, exactly n_frames / fps): silence or the spoken question under the
        cards, the clip's audio under the clip. Written now, not while planning, so the clip's audio may still
        be in the making while frames are planned and rendered. An output that is the clip alone has the clip's
        own file as its audio (nothing to copy)."""
        if len(self._audio) == 1 and self._audio[0].n_frames == self.n_frames:
            source = self._audio[0].source
            if isinstance(source, Path):
                return source
        return write_timeline(self._audio, self.fps, self._audio_path)

    def write_sidecars(self, out_mp4: Path, srt: bool = True, vtt: bool = True) -> list[Path]:
        """`<stem>.srt` / `<stem>.vtt` beside the output (only when there are cues); recorded in `record`."""
        written: list[Path] = []
        if self.captions and srt:
            written.append(write_srt(self.captions, out_mp4.with_suffix(".srt")))
        if self.captions and vtt:
            written.append(write_vtt(self.captions, out_mp4.with_suffix(".vtt")))
        self.record["captions"]["files"] = [p.name for p in written]
        return written

    def _caption_overlay(self, cue: Cue) -> Overlay:
        style, fill, max_w, bottom = self._caption_style
        rgba = text_panel(cue.text, style, fill, max_w, max_lines=3, pad=0.3)
        h, w = rgba.shape[:2]
        return Overlay(rgba, (self.size[0] - w) // 2, self.size[1] - bottom - h)

    def output_point(self, point: tuple[float, float], clip_size: tuple[int, int]) -> tuple[float, float]:
        """Where a point of a clip frame (fractions of its width and height) shows in the output (fractions)."""
        return point if self._placement is None else self._placement.output_point(point, clip_size)

    def clip_start(self, start: int) -> int:
        """The first clip frame `frames(clip, start)` needs: the title card's fade-out shows clip frame 0 and the
        closing card's fade-in the last clip picture, so a start in a card begins the clip there."""
        return min(max(start - self.clip_offset, 0), self.clip_frames - 1)

    def frames(self, clip_frames: Iterator[np.ndarray], start: int = 0) -> Iterator[np.ndarray]:
        """Output frames `start`.. `n_frames - 1` (RGB uint8) from the clip frames `clip_start(start)` on.

        Every output frame depends only on its index and the clip frame(s) it shows, so any start gives the
        same frames as a full run from 0 (a resumed render relies on it)."""
        if not 0 <= start < self.n_frames:
            raise ValueError(f"start {start} outside 0..{self.n_frames - 1}")
        source = _ClipSource(iter(clip_frames), self.clip_start(start), self.clip_frames, self._clip_output)
        last_card: tuple[CardSegment | None, np.ndarray | None] = (None, None)
        for i in range(start, self.n_frames):
            k = i - self.clip_offset
            if 0 <= k < self.clip_frames:
                yield self._finish(source.picture(k))
                continue
            card = self._card_at(i)
            j = i - card.first_frame
            if j >= card.n_frames - card.fade_out:
                a = (j - (card.n_frames - card.fade_out) + 1) / (card.fade_out + 1)
                yield self._finish(_mix(card.image, source.picture(0), a))
            elif j < card.fade_in:
                last = source.picture(self.clip_frames - 1)
                yield self._finish(_mix(last, card.image, (j + 1) / (card.fade_in + 1)))
            else:
                if last_card[0] is not card:  # a still card is labelled once
                    last_card = (card, self._finish(card.image.copy()))
                yield last_card[1].copy()
        source.finish()

    @cached_property
    def _cue_ends(self) -> list[float]:
        return [cue.end for cue in self.captions]

    def _card_at(self, i: int) -> CardSegment:
        for card in self._cards:
            if card.first_frame <= i < card.first_frame + card.n_frames:
                return card
        raise RenderError(f"output frame {i} is in neither the clip nor a card")

    def _clip_output(self, clip_frame: np.ndarray, k: int) -> np.ndarray:
        """Clip frame k as it appears in the output: placed, with its overlays and burned-in caption."""
        i = self.clip_offset + k
        picture = self._clip_picture(clip_frame, i)
        cue = self._cue_at(i / self.fps)
        if cue is not None:
            if self._cached_cue[0] is not cue:
                self._cached_cue = (cue, self._caption_overlay(cue))
            self._cached_cue[1].blend_onto(picture)
        return picture

    def _cue_at(self, t: float) -> Cue | None:
        if self._caption_style is None:
            return None
        i = bisect.bisect_right(self._cue_ends, t)  # the first cue still running at t (cues are in order)
        return self.captions[i] if i < len(self.captions) and self.captions[i].start <= t else None

    def _clip_picture(self, clip_frame: np.ndarray, i: int) -> np.ndarray:
        """The clip frame placed in the output, with the overlays active at output frame `i` (not the label)."""
        picture = self._placement.place(clip_frame)
        if picture is clip_frame:
            picture = picture.copy()
        t = i / self.fps
        for timed in self._timed:
            opacity = timed.opacity(t)
            if opacity > 0:
                timed.overlay.blend_onto(picture, opacity)
        return picture

    def _finish(self, frame: np.ndarray) -> np.ndarray:
        """The label, in place: every frame that reaches here is a fresh picture of this plan's own."""
        if self._label is not None:
            self._label.blend_onto(frame)
        return frame


class _ClipSource:
    """Clip frames taken in order from `first`, turned into output pictures; the first and last pictures are
    kept, because the cards' cross-fades show them again."""

    def __init__(self, frames: Iterator[np.ndarray], first: int, total: int, to_picture):
        self.frames, self.next, self.total, self.to_picture = frames, first, total, to_picture
        self.first = first
        self.kept: dict[int, np.ndarray] = {}

    def picture(self, k: int) -> np.ndarray:
        """Clip frame k's output picture, the caller's to modify."""
        if k in self.kept:
            return self.kept[k].copy()
        if k != self.next:
            raise RenderError(f"clip frame {k} asked for out of order (next is {self.next})")
        frame = next(self.frames, None)
        if frame is None:
            raise RenderError(f"the clip ended after {k} frames; expected {self.total}")
        self.next += 1
        picture = self.to_picture(frame, k)
        if k in (0, self.total - 1):
            self.kept[k] = picture.copy()
        return picture

    def finish(self) -> None:
        """Every clip frame from `first` was used, no more. A start in the closing card asks for the last clip
        frame (clip_start), which only a fade-in shows: without one it is taken here."""
        if self.next == self.first == self.total - 1:
            self.picture(self.total - 1)
        if self.next != self.total:
            raise RenderError(f"the compositor used clip frames up to {self.next}, the clip has {self.total}")
        if next(self.frames, None) is not None:
            raise RenderError(f"the clip has more than the {self.total} frames the audio allows")


def _mix(a: np.ndarray, b: np.ndarray, weight_b: float) -> np.ndarray:
    out = a.astype(np.float32) * (1.0 - weight_b) + b.astype(np.float32) * weight_b
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _frames(seconds: float, fps: float) -> int:
    return max(1, int(round(seconds * fps)))


def card_frames(
    job: Any, kind: str, fps: float, question_audio_seconds: float | None = None
) -> tuple[int, int]:
    """(frames of the card before the clip, frames of the card after it): the title or question card, and an
    intro's closing card. The composition and the --dry-run estimate both count cards this way."""
    before = after = 0
    if kind == "intro":
        before = _frames(job.title.duration if job.title else 3.0, fps)
        if job.closing is not None:
            after = _frames(job.closing.duration, fps)
    elif kind == "faq":
        seconds = job.question.duration
        if question_audio_seconds is not None:
            seconds = max(seconds, question_audio_seconds + QUESTION_AUDIO_TAIL)
        before = _frames(seconds, fps)
    return before, after


def drawn_texts(
    job: Any, kind: str, persona_name: str, script_text: str | None
) -> dict[str, tuple[str, bool]]:
    """Every text the composition draws, by field: (text, drawn in the bold font)."""
    texts: dict[str, tuple[str, bool]] = {}
    if kind == "intro":
        texts["persona.name"] = (persona_name, False)
        for name in ("title", "closing"):
            card = getattr(job, name)
            if card is not None:
                texts[f"{name}.text"] = (card.text, True)
                if card.subtitle:
                    texts[f"{name}.subtitle"] = (card.subtitle, False)
    if kind == "summary":
        for i, chapter in enumerate(job.chapters):
            texts[f"chapters.{i}.text"] = (chapter.text, True)
    if kind == "faq" and job.question is not None:
        texts["question.text"] = (job.question.text, True)
    if job.captions.burn_in and script_text:
        texts["captions"] = (script_text, False)
    return texts


def missing_glyph_report(
    job: Any, kind: str, persona_name: str, theme: Theme, script_text: str | None
) -> dict[str, str]:
    """{field: the characters of its text that no installed font can draw}, for the fields that have some."""
    from pipelines.compose.fonts import missing_glyphs

    report = {}
    for field_name, (text, bold) in drawn_texts(job, kind, persona_name, script_text).items():
        lacking = missing_glyphs(text, theme.font_bold if bold else theme.font, bold=bold)
        if lacking:
            report[field_name] = lacking
    return report


def plan_composition(
    job: CompositionFields,
    kind: str,
    persona_name: str,
    disclosure: Disclosure | None,
    clip_size: tuple[int, int],
    fps: float,
    speech: Speech,
    clip_audio_48k: Path,
    work_dir: Path,
    *,
    wm_id: str,
    script_text: str | None = None,
    size: tuple[int, int] | None = None,
    theme: Theme | None = None,
) -> CompositionPlan:
    """Plan one output. `job` is the validated Job (its CompositionFields), `speech` the clip's speech track.

    `clip_audio_48k` is the clip's prepared audio, read only by `plan.write_audio()` (it need not exist yet);
    `job.question_audio` (faq) is decoded here. `size` is the job's explicit output size; `theme` overrides
    loading `job.theme` (tests). `plan.write_audio()` writes the output audio into `work_dir`; frames come from
    `plan.frames(...)`.
    """
    if kind not in ("intro", "summary", "faq"):
        raise InputError(None, "kind", f"expected intro, summary or faq, got {kind!r}")
    if kind == "faq" and job.question is None:
        raise InputError(None, "question", "an faq job needs a question: {text: ...}")
    theme = theme if theme is not None else load_theme(job.theme)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    out_size = output_size(job.layout, clip_size, size)
    width, height = out_size
    unit = min(width, height)
    backdrop = background(out_size, job.layout.background, theme.colours.background, theme.background_image)
    placement = plan_placement(job.layout, out_size, clip_size, backdrop)
    n_clip = speech.n_frames
    xfade = _frames(theme.crossfade, fps) if theme.crossfade > 0 else 0

    # --- timeline: cards around the clip
    cards: list[CardSegment] = []
    audio: list[AudioSegment] = []
    record_cards: list[dict[str, Any]] = []
    cursor = 0
    question_samples = None
    if kind == "intro":
        title = job.title
        text = (
            CardText(heading=title.text, kicker=persona_name, subheading=title.subtitle)
            if title
            else CardText(heading=persona_name)
        )
        n = card_frames(job, kind, fps)[0]
        cards.append(
            CardSegment(
                "title", 0, n, render_card(out_size, text, theme, backdrop), 0, min(xfade, n // 2, n_clip)
            )
        )
        audio.append(AudioSegment(0, n, None))
        record_cards.append({"card": "title", "frames": n, "text": text.heading})
        cursor = n
    elif kind == "faq":
        question = job.question
        spoken = None
        if job.question_audio is not None:
            from pipelines.media.audio import OUTPUT_RATE, load_audio

            question_samples = load_audio(job.question_audio, OUTPUT_RATE)
            spoken = len(question_samples) / OUTPUT_RATE
        n = card_frames(job, kind, fps, spoken)[0]
        text = CardText(heading=question.text, subheading=question.subtitle)
        cards.append(
            CardSegment(
                "question", 0, n, render_card(out_size, text, theme, backdrop), 0, min(xfade, n // 2, n_clip)
            )
        )
        audio.append(AudioSegment(0, n, question_samples))
        record_cards.append(
            {"card": "question", "frames": n, "text": question.text, "spoken": question_samples is not None}
        )
        cursor = n
    clip_offset = cursor
    audio.append(AudioSegment(clip_offset, n_clip, Path(clip_audio_48k)))
    cursor += n_clip
    if kind == "intro" and job.closing is not None:
        n = card_frames(job, kind, fps)[1]
        text = CardText(heading=job.closing.text, subheading=job.closing.subtitle)
        cards.append(
            CardSegment(
                "closing",
                cursor,
                n,
                render_card(out_size, text, theme, backdrop),
                min(xfade, n // 2, n_clip),
                0,
            )
        )
        audio.append(AudioSegment(cursor, n, None))
        record_cards.append({"card": "closing", "frames": n, "text": job.closing.text})
        cursor += n
    n_total = cursor
    offset_s = clip_offset / fps
    clip_end_s = (clip_offset + n_clip) / fps

    # --- overlays on the clip
    panel_fill = parse_colour(theme.colours.panel)
    label_spec: LabelSpec | None = resolve_label(disclosure, theme)
    label = label_overlay(label_spec, out_size, theme) if label_spec else None
    margin = int(unit * 0.04)
    caption_bottom = margin
    if label is not None and label_spec.position.startswith("bottom"):
        caption_bottom += label.rgba.shape[0] + margin // 2
    caption_font = load_font(theme.font, max(12, int(unit * 0.045)))
    caption_zone = int(caption_font.size * 1.25 * 2 + caption_font.size)

    timed: list[TimedOverlay] = []
    third_style = TextStyle(
        load_font(theme.font_bold, max(12, int(unit * 0.05)), bold=True),
        parse_colour(theme.colours.text),
        align="start",
    )
    for chapter in job.chapters if kind == "summary" else []:
        start = offset_s + chapter.at
        if start >= clip_end_s:
            raise InputError(
                None,
                "chapters",
                f"a chapter at {chapter.at:g} s starts after the clip ends ({n_clip / fps:.2f} s)",
            )
        rgba = text_panel(
            chapter.text,
            third_style,
            panel_fill,
            int(width * 0.7),
            max_lines=2,
            accent=parse_colour(theme.colours.accent),
        )
        # Above the burned-in captions' two lines (and the label when it sits at the bottom).
        bottom = caption_bottom + (caption_zone if job.captions.burn_in else 0) + margin
        overlay = Overlay(rgba, margin, height - bottom - rgba.shape[0])
        timed.append(TimedOverlay(start, min(start + chapter.duration, clip_end_s), overlay, FADE_SECONDS))
    if kind == "faq":
        banner_style = TextStyle(
            load_font(theme.font_bold, max(12, int(unit * 0.042)), bold=True),
            parse_colour(theme.colours.text),
        )
        rgba = text_panel(job.question.text, banner_style, panel_fill, int(width * 0.86), max_lines=2)
        timed.append(TimedOverlay(offset_s, clip_end_s, Overlay(rgba, (width - rgba.shape[1]) // 2, margin)))

    # --- captions
    tokens, timing = timed_tokens(script_text, speech.words, speech.samples, speech.sample_rate)
    # Burnt-in cues are cut to what fits the caption panel, so no line is ever wrapped again or cut off.
    caption_width = int(width * 0.84)
    line_chars = line_chars_for(caption_font, caption_width) if job.captions.burn_in else LINE_CHARS
    cues = [c.shifted(offset_s) for c in group_cues(tokens, speech.duration, line_chars)]
    caption_style = None
    if job.captions.burn_in and cues:
        caption_style = (
            TextStyle(caption_font, parse_colour(theme.colours.text)),
            panel_fill,
            caption_width,
            caption_bottom,
        )

    record = {
        "kind": kind,
        "size": [width, height],
        "fps": fps,
        "n_frames": n_total,
        "duration": round(n_total / fps, 3),
        "clip": {"first_frame": clip_offset, "frames": n_clip},
        "cards": record_cards,
        "crossfade_frames": xfade if cards else 0,
        "layout": {"mode": job.layout.mode, "aspect": job.layout.aspect, "box": list(placement.box)},
        "lower_thirds": sum(1 for _ in job.chapters) if kind == "summary" else 0,
        "question_banner": kind == "faq",
        "captions": {"timing": timing, "cues": len(cues), "burn_in": caption_style is not None, "files": []},
        "label": (
            {"text": label_spec.text, "position": label_spec.position}
            | ({"note": label_spec.note} if label_spec.note else {})
            if label_spec
            else None
        ),
        "missing_glyphs": missing_glyph_report(job, kind, persona_name, theme, script_text),
        "label_off_reason": None if label_spec else "persona disclosure.label is false",
        "watermark": {
            "library": "invisible-watermark",
            "method": METHOD,
            "channel": DEFAULT_CHANNEL,
            "scale": DEFAULT_SCALE,
            "id": wm_id,
        },
        "text": {
            "layout_engine": layout_engine_name(),
            "font": str(theme.font) if theme.font else default_font_path().name,
            "font_bold": str(theme.font_bold) if theme.font_bold else default_font_path(bold=True).name,
        },
        "theme": str(job.theme) if job.theme else None,
    }
    return CompositionPlan(
        size=out_size,
        fps=fps,
        n_frames=n_total,
        clip_offset=clip_offset,
        clip_frames=n_clip,
        _audio_path=work_dir / "composed_48k.wav",
        _audio=audio,
        captions=cues,
        wm_id=wm_id,
        record=record,
        _cards=cards,
        _placement=placement,
        _timed=timed,
        _caption_style=caption_style,
        _label=label,
    )
