"""Each kind rendered end to end from a synthetic clip: timeline, audio, text, overlays, label, watermark, MP4."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.compose.cards import CardText, render_card
from pipelines.compose.layout import background
from pipelines.compose.plan import plan_composition
from pipelines.compose.theme import load_theme
from pipelines.media.audio import OUTPUT_RATE
from pipelines.media.video_in import iter_frames
from pipelines.media.video_out import encode_final
from pipelines.provenance.label import label_overlay, resolve_label
from pipelines.provenance.verify import read_watermark
from pipelines.provenance.watermark import Watermarker
from pipelines.spec.compose import CompositionFields
from pipelines.spec.persona import Disclosure
from pipelines.speech.track import TimedUnit
from tests.compose_helpers import CLIP_SIZE, FPS, clip_frames, make_speech, psnr, read_wav, tone, write_wav

N_CLIP = 40  # 1.6 s at 25 fps
WM_ID = "3fa2c901"
WORDS = tuple(
    TimedUnit(0.1 + 0.18 * i, 0.25 + 0.18 * i, w)
    for i, w in enumerate("Ciao a tutti. Ecco perché è così.".split())
)


def _plan(tmp_path, kind, fields, disclosure=None, script=None, name="Ada Lovelace", clip_size=CLIP_SIZE):
    job = CompositionFields.model_validate(fields)
    tmp_path.mkdir(parents=True, exist_ok=True)
    wav = write_wav(tmp_path / "clip_48k.wav", tone(N_CLIP / FPS, OUTPUT_RATE), OUTPUT_RATE)
    speech = make_speech(N_CLIP, WORDS)
    return plan_composition(
        job,
        kind,
        name,
        disclosure,
        clip_size,
        FPS,
        speech,
        wav,
        tmp_path / kind,
        wm_id=WM_ID,
        script_text=script,
    )


def _render(plan):
    return list(plan.frames(clip_frames(plan.clip_frames)))


def _encode(plan, frames, path):
    return encode_final(
        iter(frames),
        plan.n_frames,
        plan.fps,
        plan.size,
        plan.write_audio(),
        path,
        crf=18,
        watermark=plan.watermark,
    )


def _audio_rms(samples, fps, first, count):
    a, b = int(first / fps * OUTPUT_RATE), int((first + count) / fps * OUTPUT_RATE)
    return float(np.sqrt(np.mean(samples[a:b] ** 2)))


@pytest.fixture(scope="module")
def intro(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("intro")
    plan = _plan(
        tmp,
        "intro",
        {
            "title": {"text": "Bienvenue à l'équipe", "subtitle": "Über uns", "duration": 1.0},
            "closing": {"text": "Grazie mille!", "duration": 0.8},
            "layout": {"aspect": "16:9"},
            "captions": {"burn_in": True},
        },
    )
    frames = _render(plan)
    mp4 = _encode(plan, frames, tmp / "intro.mp4")
    return plan, frames, mp4


def test_intro_timeline_is_title_then_clip_then_closing(intro):
    plan, frames, _ = intro
    assert plan.size == (682, 384)
    assert plan.clip_offset == 25 and plan.clip_frames == N_CLIP
    assert plan.n_frames == 25 + N_CLIP + 20 == len(frames)
    assert [c["card"] for c in plan.record["cards"]] == ["title", "closing"]
    samples, rate = read_wav(plan.write_audio())
    assert rate == OUTPUT_RATE and len(samples) == round(plan.n_frames / FPS * OUTPUT_RATE)
    assert _audio_rms(samples, FPS, 0, 25) == 0
    assert _audio_rms(samples, FPS, 25, N_CLIP) > 0.1
    assert _audio_rms(samples, FPS, 25 + N_CLIP, 20) == 0


def test_intro_mp4_has_every_frame_and_exact_length_audio(intro):
    import av

    plan, _, mp4 = intro
    decoded = list(iter_frames(mp4))
    assert len(decoded) == plan.n_frames
    with av.open(str(mp4)) as container:
        audio = container.streams.audio[0]
        assert audio.sample_rate == OUTPUT_RATE
        seconds = float(audio.duration * audio.time_base)
    assert abs(seconds - plan.duration) < 0.03


def _reference_card(plan, text: CardText, tmp_path=None):
    """The card rendered alone (+ the label); with `tmp_path`, through the same H.264 encode and decode."""
    theme = load_theme(None)
    card = render_card(plan.size, text, theme, background(plan.size, None, theme.colours.background, None))
    label_overlay(resolve_label(None, theme), plan.size, theme).blend_onto(card)
    if tmp_path is None:
        return card
    silence = write_wav(tmp_path / "silence.wav", np.zeros(OUTPUT_RATE // 5, np.float32), OUTPUT_RATE)
    marker = Watermarker(WM_ID)
    mp4 = encode_final(
        iter([card] * 3), 3, plan.fps, plan.size, silence, tmp_path / "card.mp4", crf=18, watermark=marker
    )
    return next(iter_frames(mp4))


def test_title_text_is_on_the_opening_frames(intro, tmp_path):
    plan, _, mp4 = intro
    frame = next(iter_frames(mp4))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    right = _reference_card(
        plan, CardText("Bienvenue à l'équipe", kicker="Ada Lovelace", subheading="Über uns"), tmp_path / "a"
    )
    wrong = _reference_card(
        plan, CardText("Bienvenue a l'equipe", kicker="Ada Lovelace", subheading="Uber uns"), tmp_path / "b"
    )
    assert psnr(frame, right) > 42
    assert psnr(frame, right) > psnr(frame, wrong) + 6


def test_crossfade_blends_card_into_clip(intro):
    plan, frames, _ = intro
    card, clip_first = frames[0].astype(float), frames[plan.clip_offset].astype(float)
    mid = frames[plan.clip_offset - 3].astype(float)  # inside the title's fade-out
    d_card, d_clip = np.abs(mid - card).mean(), np.abs(mid - clip_first).mean()
    assert d_card > 5 and d_clip > 5  # neither picture alone
    assert plan.record["crossfade_frames"] == 12


@pytest.mark.parametrize("start", [0, 3, 24, 25, 40, 64, 65, 70, 84])
def test_frames_from_any_start_equal_the_full_run(intro, start):
    # title 0..24 (fading into the clip), clip 25..64, closing 65..84 (fading in from the last clip picture)
    plan, frames, _ = intro
    first = plan.clip_start(start)
    assert first == min(max(start - 25, 0), N_CLIP - 1)
    tail = list(plan.frames(iter(list(clip_frames(plan.clip_frames))[first:]), start))
    assert len(tail) == plan.n_frames - start
    assert all(np.array_equal(a, b) for a, b in zip(tail, frames[start:], strict=True))


def test_burned_in_captions_appear_during_the_clip(intro, tmp_path):
    plan, frames, _ = intro
    quiet = _plan(
        tmp_path,
        "intro",
        {
            "title": {"text": "Bienvenue à l'équipe", "subtitle": "Über uns", "duration": 1.0},
            "closing": {"text": "Grazie mille!", "duration": 0.8},
            "layout": {"aspect": "16:9"},
        },
    )
    plain = _render(quiet)
    i = plan.clip_offset + 10  # 0.4 s into the clip: the first cue is showing
    assert plan.captions[0].start == pytest.approx(plan.clip_offset / FPS + WORDS[0].start, abs=1e-3)
    bottom = slice(plan.size[1] * 2 // 3, plan.size[1])
    assert np.abs(frames[i][bottom].astype(float) - plain[i][bottom]).mean() > 3
    assert np.array_equal(frames[0], plain[0])  # cards carry no captions
    assert plan.record["captions"]["burn_in"] and plan.record["captions"]["timing"] == "words"


def test_sidecars_are_written_and_recorded(intro, tmp_path):
    plan, _, _ = intro
    written = plan.write_sidecars(tmp_path / "intro.mp4")
    assert [p.suffix for p in written] == [".srt", ".vtt"]
    assert plan.record["captions"]["files"] == ["intro.srt", "intro.vtt"]
    srt = written[0].read_text(encoding="utf-8")
    assert srt.startswith("1\n00:00:01,100 --> ") and "Ciao a tutti." in srt


def test_watermark_reads_back_from_the_final_mp4(intro):
    plan, _, mp4 = intro
    reading = read_watermark(mp4, n_frames=12)
    assert reading["found"] and reading["id"] == WM_ID
    assert reading["frames_agreeing"] >= 10
    assert plan.record["watermark"]["id"] == WM_ID


def test_label_is_drawn_unless_the_persona_turns_it_off(tmp_path):
    fields = {"chapters": [], "layout": {"aspect": "1:1"}}
    with_label = _render(_plan(tmp_path / "a", "summary", fields))
    off = _plan(tmp_path / "b", "summary", fields, disclosure=Disclosure(label=False))
    without = _render(off)
    assert off.record["label"] is None and off.record["label_off_reason"]
    h, w = with_label[0].shape[:2]
    corner = (slice(h * 4 // 5, h), slice(w // 2, w))  # default bottom-right
    rest = (slice(0, h // 2), slice(0, w))
    for i in (0, N_CLIP - 1):
        assert np.abs(with_label[i][corner].astype(float) - without[i][corner]).mean() > 8
        assert np.abs(with_label[i][rest].astype(float) - without[i][rest]).mean() < 1.5


def test_label_text_and_position_follow_the_persona(tmp_path):
    plan = _plan(tmp_path, "summary", {}, disclosure=Disclosure(text="Generato con IA", position="top-left"))
    assert plan.record["label"] == {"text": "Generato con IA", "position": "top-left"}
    frames = _render(plan)
    plain = _render(_plan(tmp_path / "off", "summary", {}, disclosure=Disclosure(label=False)))
    h, w = frames[0].shape[:2]
    assert np.abs(frames[5][: h // 5, : w // 2].astype(float) - plain[5][: h // 5, : w // 2]).mean() > 8


def test_summary_shows_lower_thirds_only_in_their_window(tmp_path):
    fields = {
        "chapters": [{"at": 0.3, "text": "Capitolo 1: perché", "duration": 0.7}],
        "layout": {"aspect": "9:16"},
    }
    plan = _plan(tmp_path, "summary", fields)
    frames = _render(plan)
    plain = _render(_plan(tmp_path / "plain", "summary", {"layout": {"aspect": "9:16"}}))
    assert plan.size == (384, 682) and plan.n_frames == N_CLIP and plan.clip_offset == 0
    h = plan.size[1]
    region = (slice(h // 2, h), slice(0, plan.size[0] * 3 // 4))

    def diff(i):
        return np.abs(frames[i][region].astype(float) - plain[i][region]).mean()

    assert diff(16) > 5  # 0.64 s: fully shown
    assert diff(4) < 0.5 and diff(30) < 0.5  # before and after its window
    assert plan.record["lower_thirds"] == 1


def test_faq_question_card_spoken_question_and_banner(tmp_path):
    question_wav = write_wav(tmp_path / "q.wav", tone(1.5, OUTPUT_RATE), OUTPUT_RATE)
    fields = {
        "question": {"text": "Che cos'è un'intelligenza artificiale?", "duration": 1.0},
        "question_audio": str(question_wav),
        "layout": {"aspect": "1:1"},
    }
    plan = _plan(tmp_path, "faq", fields)
    frames = _render(plan)
    # The card lasts the spoken question plus a short tail, not the 1.0 s asked for.
    assert plan.clip_offset == round((1.5 + 0.6) * FPS)
    assert plan.n_frames == plan.clip_offset + N_CLIP == len(frames)
    samples, _ = read_wav(plan.write_audio())
    assert _audio_rms(samples, FPS, 0, int(1.4 * FPS)) > 0.1
    right = _reference_card(plan, CardText("Che cos'è un'intelligenza artificiale?"))
    wrong = _reference_card(plan, CardText("Che cosa non è un'intelligenza artificiale?"))
    assert psnr(frames[0], right) > 38 and psnr(frames[0], right) > psnr(frames[0], wrong) + 6
    # The banner: the top of every answer frame differs from the clip without it.
    no_banner = _render(_plan(tmp_path / "s", "summary", {"layout": {"aspect": "1:1"}}))
    top = slice(0, plan.size[1] // 5)
    assert np.abs(frames[plan.clip_offset + 10][top].astype(float) - no_banner[10][top]).mean() > 10
    assert plan.record["question_banner"] and plan.record["cards"][0]["spoken"]


def test_pip_layout_places_the_clip_over_the_background(tmp_path):
    fields = {
        "layout": {
            "mode": "pip",
            "aspect": "16:9",
            "background": "#204060",
            "position": "right",
            "scale": 0.6,
        }
    }
    plan = _plan(tmp_path, "summary", fields, disclosure=Disclosure(label=False))
    frames = _render(plan)
    x, y, w, h = plan.record["layout"]["box"]
    assert x + w <= plan.size[0] and y + h <= plan.size[1] and x > plan.size[0] // 2 - w // 2
    corner = frames[0][:32, :32].reshape(-1, 3).mean(axis=0)
    assert (
        np.abs(corner - (0x20, 0x40, 0x60)).max() <= 8
    )  # the background colour (the watermark moves B a little)
    inner = frames[0][y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4]
    assert np.abs(inner.astype(float) - (0x20, 0x40, 0x60)).mean() > 30


def test_clip_with_the_wrong_number_of_frames_is_an_error(tmp_path):
    from pipelines.errors import RenderError

    small = (128, 128)  # under the watermark's minimum size: nothing but the frame count is exercised
    plan = _plan(tmp_path, "summary", {}, clip_size=small)
    with pytest.raises(RenderError, match="ended after"):
        list(plan.frames(clip_frames(N_CLIP - 1, small)))
    with pytest.raises(RenderError, match="more than"):
        list(plan.frames(clip_frames(N_CLIP + 1, small)))


def test_memory_does_not_grow_with_the_clip_length(tmp_path):
    import tracemalloc

    from pipelines.speech.track import Speech

    small = (200, 200)  # under the watermark's minimum size: this measures the compositor's own buffers
    fields = {"title": {"text": "Title", "duration": 0.4}, "captions": {"burn_in": True}}

    def peak(n_clip: int) -> int:
        folder = tmp_path / str(n_clip)
        folder.mkdir()
        wav = write_wav(folder / "clip.wav", tone(n_clip / FPS, OUTPUT_RATE), OUTPUT_RATE)
        speech = Speech(tone(n_clip / FPS, 16000), 16000, FPS, n_clip)
        plan = plan_composition(
            CompositionFields.model_validate(fields), "intro", "Ada", None, small, FPS, speech, wav, folder,
            wm_id=WM_ID, script_text="word " * (n_clip // 5),
        )  # fmt: skip
        tracemalloc.start()
        for _ in plan.frames(clip_frames(n_clip, small)):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short, long = peak(20), peak(200)
    assert long < short * 1.5 + 2_000_000
