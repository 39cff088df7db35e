"""One job, end to end: plan (is it up to date?), audio, expression, engine frames, compose, encode, mux, record.

One pass: the engine's frames flow through the compositor straight into the H.264 segments of the job's work
folder (pipelines.media.video_out.SegmentWriter), then the segments are joined with the audio. A render killed at
any point resumes at the first missing segment: the compositor and the engine both start at any frame and give
the frames a full run gives there. Nothing holds the whole clip in memory.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.ahead import in_background
from pipelines.cache import FileHasher, code_version, hash_payload
from pipelines.engines.base import Engine, Frame, RenderSettings
from pipelines.errors import InputError, RenderError
from pipelines.publish import (
    Stage,
    job_key,
    matches_record,
    output_facts,
    read_record,
    record_path_for,
    remove_stale_work,
)
from pipelines.spec.audio import FileAudio, PauseSegment, TextAudio
from pipelines.spec.loader import LoadedJob
from pipelines.speech.track import Speech, TimedUnit

RECORD_VERSION = 1
SEGMENT_FRAMES = 250  # output frames per resumable segment: a kill loses at most this much work
FEATURE_RATE = 16000
# Engines whose output is a draft get x264's veryfast preset by default (output.preset overrides it). ultrafast
# costs less CPU but gives no sensible file: a 6 s preview job at 1080x1920, CRF 18, measured 10.7 Mbit/s with
# ultrafast, 8.7 with superfast and 2.4 with veryfast (x264's time 6.7 s, -, 9.1 s on a busy 2-core machine).
DRAFT_PRESETS = {"preview": "veryfast"}
# ...with superfast's motion search (diamond, one subpixel step, no inter sub-partitions) but veryfast's
# macroblock tree, which is what keeps the file small. x264 alone at CRF 18, one thread, on the preview's own
# frames (512x512, 750 frames): 5.9-6.3 -> 2.4-2.6 ms a frame for 0.38 -> 0.47 Mbit/s at the same SSIM (0.9876);
# on a 1080x1920 talking clip 38 -> 22 ms for 2.8 -> 3.3 Mbit/s, SSIM 0.9915 -> 0.9909 (superfast itself, which
# drops the tree, made 1.1 and 6.5 Mbit/s). x264 was the largest CPU share of a preview job.
# Only with the default preset: a preset the job names is x264's own.
# Not taken: b-adapt=0 (always 3 B-frames) cut x264's instructions (valgrind, 250 frames) by 8 % at 512x512 and
# the file by 23 %, but B-frames' coarser quantiser costs quality at the same CRF (SSIM 0.98753 -> 0.98727) and
# the watermark: after a user's CRF 28 re-encode 139 of 250 frames still read alone, against 186 (the vote held).
# At 1080x1920 it saved 1.3 % and 3.5 %. Nor no-deblock (-5 %), aq-mode=0 (-3 %), weightp=0 or scenecut=0 (0 %).
DRAFT_X264_PARAMS = "me=dia:subme=1:partitions=i8x8,i4x4"
DRAFT_PAUSE = 0.25  # seconds of silence before and after draft (text) speech
# The output audio's priority (Unix nice) while it is made beside the frames: the lowest, so the engine, the
# compositor and x264 are not kept waiting by it (interleaved A/B runs of a 750-frame 512x512 preview job: the
# niced child gave a median ~3 % more frames/s than the same work on a thread of the render process).
AUDIO_NICE = 19

StageProgress = Callable[[str, int, int], None]
"""Called with (stage, frames done, frames total) while frames flow."""


@dataclass
class JobPlan:
    """What rendering one job means before anything heavy runs."""

    loaded: LoadedJob
    out_path: Path
    content_hash: str
    inputs: dict[str, str]  # input file -> sha256
    up_to_date: bool
    # Another job whose record is beside out_path: this job would overwrite that job's output (two processes,
    # or two batches, with different jobs naming one output). None when the output is free or this job's.
    owner: str | None = None
    force: bool = False  # render even when up to date, and replace another job's output

    @property
    def record_path(self) -> Path:
        return record_path_for(self.out_path)

    @property
    def work_dir(self) -> Path:
        # Keyed by content hash: a changed job never resumes from another version's chunks.
        return self.out_path.parent / ".talkreel" / f"{self.out_path.stem}-{self.content_hash[:16]}"

    @property
    def engine_name(self) -> str:
        return self.loaded.job.engine.name


def plan_job(loaded: LoadedJob, out_dir: Path, hasher: FileHasher, force: bool = False) -> JobPlan:
    job = loaded.job
    out_path = (out_dir / job.output.path).resolve()
    _check_output_folder(loaded, out_path)
    inputs = {str(p): hasher(p) for p in sorted(set(loaded.input_files()))}
    content_hash = hash_payload(
        {
            "job": job.model_dump(mode="json"),
            "persona": loaded.persona.model_dump(mode="json"),
            "inputs": inputs,
            "code": code_version(),
        }
    )
    up_to_date, owner = False, None
    if not force and out_path.is_file():
        record = read_record(out_path)
        # The output must still be the file its record describes: a truncated or replaced MP4 is re-rendered.
        up_to_date = record.get("content_hash") == content_hash and matches_record(out_path, record, hasher)
        owner = _other_job(loaded, record)
    return JobPlan(loaded, out_path, content_hash, inputs, up_to_date, owner, force)


def _other_job(loaded: LoadedJob, record: dict[str, Any]) -> str | None:
    """The job an output's record names when that is not `loaded` (None for this job or no record)."""
    named = record.get("job_key")
    return named if named and named != job_key(loaded.job_path, loaded.project_root) else None


def _check_output_folder(loaded: LoadedJob, out_path: Path) -> None:
    """The output's folder exists or can be made: a plain file where a folder must be is this job's error."""
    for folder in (out_path.parent, *out_path.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise InputError(
                    loaded.job_path, "output.path", f"cannot make {out_path.parent}: {folder} is a file"
                )
            return


def estimate_frames(loaded: LoadedJob) -> int | None:
    """A cheap estimate of the output's frames for --dry-run: the clip (files probed; draft text at ~14
    characters per second) and the cards around it."""
    from pipelines.compose.plan import card_frames
    from pipelines.media.probe import probe

    job = loaded.job
    fps = job.output.fps
    try:
        if isinstance(job.audio, TextAudio):
            seconds = len(job.audio.text) / 14.0 + 2 * DRAFT_PAUSE
        elif isinstance(job.audio, FileAudio):
            seconds = probe(job.audio.file).duration
        else:
            seconds = sum(
                seg.pause if isinstance(seg, PauseSegment) else probe(seg.file).duration
                for seg in job.audio.segments
            )
        question = probe(job.question_audio).duration if job.question_audio is not None else None
    except (InputError, OSError):
        return None  # unreadable media is reported by the checks before rendering
    before, after = card_frames(job, job.kind, fps, question)
    return before + round(seconds * fps) + after


@dataclass
class Timings:
    """Seconds per stage, from blocks (`stage`) and from the time an iterator spends producing its items
    (`around`); stages with the same name add up."""

    stages: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def around(self, items: Iterable, name: str) -> Iterator:
        """`items`, with the time spent in their next() added to stage `name`."""
        items = iter(items)
        while True:
            t0 = time.perf_counter()
            item = next(items, _END)
            self.add(name, time.perf_counter() - t0)
            if item is _END:
                return
            yield item

    def rounded(self) -> dict[str, float]:
        return {name: round(seconds, 3) for name, seconds in self.stages.items()}


_END = object()


def _speech_inputs(loaded: LoadedJob) -> tuple[Any, list]:
    """The audio pieces for media.audio.join_audio, and the TTS result when the job drafts its speech from text."""
    from pipelines.media.audio import RawAudio

    audio = loaded.job.audio
    if isinstance(audio, TextAudio):
        from pipelines.speech.tts import synthesize

        synthesis = synthesize(audio.text, voice=audio.voice)
        # A breath of silence around draft speech: the clip opens and ends on a closed mouth (and the card
        # cross-fades of intro / faq show a face at rest, not one caught mid-word).
        pieces = [DRAFT_PAUSE, RawAudio(synthesis.samples, synthesis.sample_rate), DRAFT_PAUSE]
        return synthesis, pieces
    if isinstance(audio, FileAudio):
        return None, [audio.file]
    return None, [seg.pause if isinstance(seg, PauseSegment) else seg.file for seg in audio.segments]


def _timing(loaded: LoadedJob, synthesis: Any, samples_16k: np.ndarray) -> tuple[tuple, tuple, str | None]:
    """Phoneme and word timing: espeak's own for draft text, DTW alignment of the script for a recording; and a
    warning when the script does not seem to be what the recording says."""
    if synthesis is not None:
        return _shifted(synthesis.phonemes, DRAFT_PAUSE), _shifted(synthesis.words, DRAFT_PAUSE), None
    script = loaded.job.script
    if not script:
        return (), (), None
    from pipelines.speech.align import script_alignment

    # A recording has no voice setting; espeak's English voice is the reference rendition of the script.
    found = script_alignment(samples_16k, FEATURE_RATE, script, voice="en")
    return tuple(found.phonemes), tuple(found.words), found.warning()


def _shifted(units, seconds: float) -> tuple[TimedUnit, ...]:
    return tuple(TimedUnit(u.start + seconds, u.end + seconds, u.label) for u in units)


class _FaceFlags:
    """Per-clip-frame face-found flags, saved beside the segments so a resumed render still counts every frame."""

    def __init__(self, path: Path, n_frames: int):
        self.path = path
        self.flags = np.ones(n_frames, dtype=bool)
        self.known = 0  # flags[:known] are set (from the engine, or from the saved file)

    def load(self, upto: int) -> None:
        """Flags of clip frames before `upto` from an earlier, interrupted run."""
        if upto and self.path.is_file():
            saved = np.load(self.path, allow_pickle=False)[:upto]
            self.flags[: len(saved)] = saved
        self.known = upto

    def images(self, frames: Iterator[Frame], first: int) -> Iterator[np.ndarray]:
        """The engine's images, noting each frame's flag on the way."""
        for k, frame in enumerate(frames, first):
            self.flags[k] = frame.face_found
            self.known = k + 1
            yield frame.image

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp.npy")
        np.save(tmp, self.flags[: self.known])
        tmp.replace(self.path)


def render_job(
    plan: JobPlan,
    engine: Engine,
    cache: Any,
    progress: StageProgress | None = None,
    qc: bool = True,
) -> dict[str, Any]:
    """Render one planned job into plan.out_path (atomically) and return its record (also written beside it).

    With `qc`, a subsample of the output frames is measured while they are made (pipelines.qc.sampling: mouth
    against speech, silences, sharpness), the finished file's audio after the mux, and a contact sheet of its
    frames is written beside it as `<name>.contact.png`.
    """
    from pipelines.media.audio import join_audio

    loaded = plan.loaded
    job, persona = loaded.job, loaded.persona
    # Read again now (the caller holds the output's lock): another process may have written it since the plan.
    owner = None if plan.force else _other_job(loaded, read_record(plan.out_path))
    if owner:
        raise RenderError(
            f"{loaded.job_path}: output.path: {plan.out_path} is the output of {owner} (its record says "
            "so); give this job another output.path, or render with --force to replace it"
        )
    fps = float(job.output.fps)
    timings = Timings()
    work = plan.work_dir
    remove_stale_work(plan.out_path, work)
    work.mkdir(parents=True, exist_ok=True)
    stage = Stage(work, plan.out_path)
    staged = stage.staged_record()
    if staged.get("content_hash") == plan.content_hash:  # killed while publishing: finish that
        stage.publish(staged)
        shutil.rmtree(work, ignore_errors=True)
        return staged
    report = progress or (lambda *_: None)

    with timings.stage("audio"):
        try:
            synthesis, pieces = _speech_inputs(loaded)
            audio = join_audio(pieces, fps, work / "audio")
            phonemes, words, alignment_warning = _timing(loaded, synthesis, audio.samples_16k)
        except InputError as exc:
            # Name the job first (the batch reports per job), then the media file that failed.
            detail = f"{exc.file}: {exc.message}" if exc.file else exc.message
            raise InputError(loaded.job_path, exc.field or "audio", detail) from None
        speech = Speech(
            audio.samples_16k, FEATURE_RATE, fps, audio.n_frames, phonemes, words, decoded=audio.decoded_16k
        )
    n_frames = audio.n_frames
    looping = _source_looping(persona, audio.duration)

    with timings.stage("expression"):
        from pipelines.expression.build import build_expression_track

        try:
            expression = build_expression_track(
                job.emotion,
                n_frames,
                fps,
                job.seed,
                idle=getattr(job.engine, "idle", 1.0),
                custom_emotions=persona.emotions,
            )
        except ValueError as exc:
            raise InputError(loaded.job_path, "emotion", str(exc)) from None

    settings = RenderSettings(
        fps=fps, size=job.output.size, seed=job.seed, engine=job.engine, loop=persona.loop
    )
    with timings.stage("prepare"):
        prepared = engine.prepare(persona, settings, cache)

    with timings.stage("compose"):
        from pipelines.compose.plan import plan_composition
        from pipelines.provenance.watermark import output_id

        composition = plan_composition(
            job,
            job.kind,
            persona.name,
            persona.disclosure,
            engine.frame_size(prepared),
            fps,
            speech,
            audio.wav_48k,  # written by _output_audio, read by composition.write_audio() after it
            work / "compose",
            wm_id=output_id(plan.content_hash),
            script_text=_script_text(job),
            size=job.output.size,
        )

    from pipelines.media.video_out import SegmentWriter, mux_segments

    faces = _FaceFlags(work / "face_found.npy", n_frames)
    preset = job.output.preset or DRAFT_PRESETS.get(engine.name, "medium")
    x264_params = DRAFT_X264_PARAMS if job.output.preset is None and engine.name in DRAFT_PRESETS else None
    writer = SegmentWriter(
        work / "segments",
        fps,
        composition.size,
        crf=job.output.crf,
        preset=preset,
        x264_params=x264_params,
        segment_frames=SEGMENT_FRAMES,
        before_commit=lambda _end: faces.save(),
        total=composition.n_frames,
        watermark=composition.watermark,
    )
    total = composition.n_frames
    # The output audio (normalised track, the composition's timeline, AAC) is made while the frames render, in
    # a child process at low priority: it never takes the GIL from the compositor, and it runs in the CPU time
    # the frames leave free (it is needed only by the mux). A failed render stops it.
    output_audio = in_background(_output_audio, audio, composition, total, fps, work, nice=AUDIO_NICE)
    qc_face = _qc_face(persona.face, engine, prepared, composition)
    qc_tap = _qc_sampler(total, fps, speech, composition.clip_offset, qc_face) if qc else None
    try:
        if writer.start < total:
            _render_frames(
                engine,
                prepared,
                speech,
                expression,
                settings,
                composition,
                writer,
                faces,
                timings,
                report,
                qc_tap,
            )
        with timings.stage("mux"):
            loud_out, track, audio_seconds = output_audio.result()
            composed = stage.mp4  # the final name, which the C2PA manifest's title records
            mux_segments(work / "segments", total, fps, track, composed)
    except BaseException:
        output_audio.abort()
        if qc_tap is not None:
            qc_tap.close()
        raise
    timings.add("audio_track", audio_seconds)

    with timings.stage("provenance"):
        disclosure = {k: composition.record.get(k) for k in ("label", "watermark")}
        provenance = _sign(composed, plan, engine, disclosure)
        staged_sidecars = composition.write_sidecars(composed, srt=job.captions.srt, vtt=job.captions.vtt)

    figures = qc_tracks = None
    if qc_tap is not None:
        with timings.stage("qc"):
            sheet = stage.path(plan.out_path.with_suffix(".contact.png"))
            figures = qc_tap.finish(composed, sheet=sheet)
            staged_sidecars.append(Path(figures.pop("contact_sheet")))
            qc_tracks = qc_tap.tracks
        timings.add("qc_frames", qc_tap.busy)  # the face mesh on the sampled frames, mostly during the render
    sidecars = [plan.out_path.parent / p.name for p in staged_sidecars]

    record = {
        "record_version": RECORD_VERSION,
        "content_hash": plan.content_hash,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "talkreel": code_version(),
        "job": str(loaded.job_path),
        "job_key": job_key(loaded.job_path, loaded.project_root),
        "output": str(plan.out_path),
        "output_file": output_facts(composed),
        "kind": job.kind,
        "persona": {
            "name": persona.name,
            "dir": str(loaded.persona_dir),
            "consent": persona.consent.model_dump(mode="json"),
            "loop": looping,
        },
        "inputs": plan.inputs,
        "engine": {
            "name": engine.name,
            "settings": job.engine.model_dump(mode="json"),
            **_engine_info(engine),
        },
        "seed": job.seed,
        "fps": fps,
        "encoding": {
            "codec": "h264",
            "crf": job.output.crf,
            "preset": preset,
            **({"x264_params": x264_params} if x264_params else {}),
        },
        "frames": {
            "clip": n_frames,
            "output": composition.n_frames,
            "without_face": int((~faces.flags).sum()),
        },
        "duration": {"speech": audio.duration, "output": composition.n_frames / fps},
        "audio": {
            "source_duration": audio.source_duration,
            "loudness_in": vars(audio.normalisation.loudness_in),
            "loudness_out": vars(loud_out) if loud_out else None,
            "normalisation": audio.normalisation.kind,
            "timing": "espeak" if synthesis is not None else ("aligned" if phonemes else "none"),
        },
        "composition": composition.record,
        "emotion": [segment.model_dump(mode="json") for segment in job.emotion],  # the review page plots it
        "provenance": provenance,
        "sidecars": [str(p) for p in sidecars],
        "qc": figures,
        "qc_face": None if qc_face is None else qc_face.model_dump(exclude_none=True),
        "qc_tracks": qc_tracks,
        "timings": timings.rounded(),
        "warnings": _warnings(alignment_warning, composition.record, looping),
    }
    stage.publish(record)
    shutil.rmtree(work, ignore_errors=True)
    return record


def _source_looping(persona: Any, speech_seconds: float) -> dict[str, Any] | None:
    """For a video persona: its length, the speech's, and whether (and how) it has to loop to cover it."""
    if persona.source_kind != "video":
        return None
    from pipelines.media.probe import probe

    seconds = probe(persona.source).duration
    return {
        "mode": persona.loop,
        "source_seconds": round(seconds, 3),
        "looped": seconds + 1e-3 < speech_seconds,
    }


_LOOP_WORDS = {
    "pingpong": "plays forwards and backwards",
    "repeat": "starts over",
    "hold": "holds its last frame",
}


def _warnings(alignment: str | None, composed: dict[str, Any], looping: dict[str, Any] | None) -> list[str]:
    """What the user should hear about this output although it rendered (the batch prints them)."""
    said = [f"script: {alignment}"] if alignment else []
    if looping and looping["looped"]:
        said.append(
            f"persona source: the video ({looping['source_seconds']:.1f} s) is shorter than the speech, so it "
            f"{_LOOP_WORDS[looping['mode']]} (persona `loop`: pingpong, repeat or hold)"
        )
    for field_name, chars in (composed.get("missing_glyphs") or {}).items():
        said.append(f"{field_name}: no installed font has glyphs for {chars!r}; drawn as boxes")
    label = composed.get("label") or {}
    if label.get("note"):
        said.append(f"disclosure.text: {label['note']}")
    return said


def _render_frames(
    engine: Engine,
    prepared: Any,
    speech: Speech,
    expression: Any,
    settings: RenderSettings,
    composition: Any,
    writer: Any,
    faces: _FaceFlags,
    timings: Timings,
    report: StageProgress,
    qc_tap: Any = None,
) -> None:
    """Every output frame from writer.start on, through the compositor into the writer.

    One pass, three stages at once: the engine makes its frames a few ahead (in a child process or on a worker
    thread, see _made_ahead) while this thread composites (label, captions), marks and feeds x264 (its own
    process) through the pipe. Stage times: "engine" is the engine's own time (it overlaps the others),
    "engine_wait" the time this thread waited for it, "compose" and "encode" this thread's work; each nested
    measure includes the one inside it, so it is subtracted.
    """
    total = composition.n_frames
    first_clip = composition.clip_start(writer.start)
    faces.load(first_clip)
    planned = timings.stages["compose"]
    frames = engine.render(prepared, speech, expression, settings, start=first_clip)
    with timings.stage("encode"), _library_threads(1), writer, _made_ahead(frames, engine, prepared) as clip:
        frames = composition.frames(faces.images(clip, first_clip), writer.start)
        for frame in timings.around(frames, "compose"):
            writer.write(frame)
            if qc_tap is not None:
                qc_tap.offer(writer.next_frame - 1, frame)
            report("render", writer.next_frame, total)
    composing = timings.stages["compose"] - planned
    timings.add("encode", -composing)
    timings.add("compose", -clip.waited)
    timings.add("engine", clip.busy)
    timings.add("engine_wait", clip.waited)


def _made_ahead(frames: Iterator[Frame], engine: Engine, prepared: Any):
    """The engine's frames made ahead of the compositor: in a forked child where the engine allows it (no GIL
    shared with the compositor), else on a worker thread."""
    from pipelines.ahead import Ahead, FramesInChild

    if getattr(engine, "forkable", False) and hasattr(os, "fork"):
        width, height = engine.frame_size(prepared)
        return FramesInChild(frames, (height, width, 3))
    return Ahead(frames, name="engine")


def _qc_sampler(n_frames: int, fps: float, speech: Speech, clip_offset: int, face: Any = None) -> Any:
    """QC of a subsample of the output frames as they are made, and of every frame in the speech's pauses;
    `face`: the picked person's place in the output (_qc_face)."""
    from pipelines.qc.sampling import QcSampler, pause_hint, render_sampling

    pauses = pause_hint(speech.samples, speech.sample_rate, fps, speech.n_frames, clip_offset)
    return QcSampler(
        n_frames,
        fps,
        render_sampling(n_frames),
        also=pauses,
        clip=(clip_offset, speech.n_frames),
        face=face,
    )


def _qc_face(pick: Any, engine: Engine, prepared: Any, composition: Any) -> Any:
    """Which face QC measures in the output when the persona picks one of several (None: the persona's is the
    only or the largest face): the point where the engine put the picked face (`face_point`, for an engine that
    reframes the source, like the preview's portrait crop) carried through the composition's layout, else the
    pick itself, right for an engine whose frames keep the source's framing (LatentSync). Recorded as
    `qc_face`, so `talkreel qc` on the output later measures the same person."""
    if pick is None:
        return None
    from pipelines.spec.persona import FacePick

    face_point = getattr(engine, "face_point", None)
    point = face_point(prepared) if callable(face_point) else None
    if point is None:
        return pick
    x, y = composition.output_point(point, engine.frame_size(prepared))
    return FacePick(x=min(max(x, 0.0), 1.0), y=min(max(y, 0.0), 1.0))


def _output_audio(audio: Any, composition: Any, n_frames: int, fps: float, work: Path) -> tuple:
    """(output loudness, the finished AAC track, seconds it took): the normalised speech written, the
    composition's timeline over it, then encoded."""
    from pipelines.media.video_out import AudioTrack

    t0 = time.perf_counter()
    loud_out = audio.write_normalised()
    with AudioTrack(composition.write_audio(), n_frames, fps, work) as track:
        path = track.finish()
    return loud_out, path, time.perf_counter() - t0


@contextmanager
def _library_threads(n: int) -> Iterator[None]:
    """OpenCV's thread pool and the BLAS libraries' (numpy's and scipy's OpenBLAS) set to `n` threads for the
    block. The render loop is parallel by frame already (engine child or thread, compositing thread, x264
    process); a forked engine child inherits the settings (it cannot use workers of the parent's pools).
    - OpenCV splitting each call across the same cores on top of that cost ~1 ms of CPU per 512x512 frame in
      hand-offs (bench/preview_speed.py, CPU per frame).
    - OpenBLAS's idle workers spin after each call: a video persona builds a warp rig per frame (a small
      linear solve per blinking eye), and the spinning took a fifth of the whole job's CPU (bench/preview_speed.py
      --video, 1080x1920: 97.6 -> 76.9 ms a frame, 19.0 -> 22.6 frames/s).
    torch's own pool (OpenMP) is left to torch."""
    import cv2
    from threadpoolctl import threadpool_limits

    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        cv2.setNumThreads(before)


def _script_text(job: Any) -> str | None:
    return job.audio.text if isinstance(job.audio, TextAudio) else job.script


def _sign(mp4: Path, plan: JobPlan, engine: Engine, applied: dict[str, Any]) -> dict[str, Any]:
    """A signed C2PA manifest when the user configured a signing identity; the record says what was done."""
    from pipelines.provenance.c2pa_manifest import sign_output

    persona = plan.loaded.persona
    return sign_output(
        mp4,
        engine=engine.name,
        weights=_engine_info(engine).get("weights", []),
        persona_name=persona.name,
        persona_is_video=persona.source_kind == "video",
        consent=persona.consent.model_dump(mode="json"),
        applied=applied,
    )


def _engine_info(engine: Engine) -> dict[str, Any]:
    """Weights revisions and other facts an engine reports about itself (optional `describe()`)."""
    describe = getattr(engine, "describe", None)
    return dict(describe()) if callable(describe) else {}
