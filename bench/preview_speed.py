"""Frames per second of a whole preview job on the demo portrait at 512x512 (or on a video persona at 1080x1920),
and its ratio to encoding alone.

Prints figures, asserts nothing. A throwaway project holds the demo persona and one job whose audio is a WAV of
espeak-ng speech repeated to N frames, with an emotion track, so the mouth, expressions and blinks all move. The
persona is prepared first (not timed: it is cached per persona). Figures:
- whole job: pipelines.render.render_job as `talkreel render` runs it (audio preparation, expression track,
  engine, compositor with label and watermark, H.264 segments, mux with the audio, record), QC off; its stage
  timings from the job record;
- render alone: the engine's frames produced and dropped;
- encode alone (the floor): the same number of frames, cycled from a pool of the job's own output frames held
  in memory, through pipelines.media encode_final at the job's preset;
- the ratio of the whole job's time to that floor;
- the whole job with QC on (`talkreel render`'s default: pipelines.qc.sampling measures a subsample of the
  frames while they are made), its QC figures, and the ratio of its time to the job without QC. QC-off and
  QC-on runs alternate, so a change in the machine's load hits both alike.
The whole job runs --repeat times (default 3): the figures are the median run's, and the best run's frames/s is
printed beside it (wall figures on a shared 2-core machine vary by several per cent from run to run).
x264 runs with the preview's draft settings (pipelines.render: DRAFT_PRESETS, DRAFT_X264_PARAMS) unless --preset
names one, which is then x264's own preset, as in a job's `output.preset`.

--by-process: one more whole job (and one with QC) after the timed ones, its CPU time split by process: this
process (compositor, watermark, pipe writes, audio preparation, QC's face mesh), the engine's forked child, x264
(one ffmpeg a segment), the AAC encoder, the niced output-audio child, other ffmpeg starts (bench/process_cpu.py
samples /proc, Linux only; not in the timed runs, whose figures the sampling would disturb).

--video [CLIP]: the persona is a talking video at 1080x1920 (--size changes it) instead of the portrait: CLIP
scaled and cropped to that size, or without CLIP a 4 s clip generated here (the demo portrait rendered speaking
by the preview engine itself at that size, so the bench needs no data set). It plays back and forth under the
longer speech, and its own mouths are used (the mouth library), as for any video persona.
Usage: python bench/preview_speed.py [N_FRAMES] [--preset P] [--repeat R] [--video [CLIP]] [--size WxH] [--no-qc]
       [--by-process]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import wave
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.engines.base import RenderSettings  # noqa: E402
from pipelines.engines.preview.demo import ensure_demo_portrait  # noqa: E402
from pipelines.engines.preview.engine import PreviewEngine  # noqa: E402
from pipelines.expression.build import build_expression_track  # noqa: E402
from pipelines.spec.engines import PreviewSettings  # noqa: E402
from pipelines.speech.track import Speech  # noqa: E402

FPS = 25.0
SIZE = (512, 512)
RATE = 16000
TEXT = (
    "Welcome back. Today we look at three things: what changed, why it matters, and what comes next. "
    "Pauses close the mouth; words open it again."
)


def make_speech(n_frames: int) -> Speech:
    from math import gcd

    from scipy.signal import resample_poly

    from pipelines.speech.track import TimedUnit
    from pipelines.speech.tts import synthesize

    syn = synthesize(TEXT)
    g = gcd(RATE, syn.sample_rate)
    one = resample_poly(syn.samples, RATE // g, syn.sample_rate // g).astype(np.float32)
    n_samples = int(round(n_frames / FPS * RATE))
    reps = -(-n_samples // len(one))
    samples = np.tile(one, reps)[:n_samples]
    period = len(one) / RATE
    phonemes, words = [], []
    for r in range(reps):
        for src, dst in ((syn.phonemes, phonemes), (syn.words, words)):
            for u in src:
                if u.start + r * period < n_frames / FPS:
                    dst.append(
                        TimedUnit(u.start + r * period, min(u.end + r * period, n_frames / FPS), u.label)
                    )
    return Speech(samples, RATE, FPS, n_frames, tuple(phonemes), tuple(words))


def write_wav(path: Path, speech: Speech) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(speech.sample_rate)
        w.writeframes((np.clip(speech.samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


JOB = """\
kind: summary
persona: demo
audio: ../speech.wav
emotion:
  - {start: 0, emotion: happy, intensity: 0.7}
  - {start: 6, emotion: thinking, intensity: 0.6}
  - {start: 12, emotion: surprised, intensity: 0.8}
  - {start: 18, emotion: neutral}
output: {size: [%d, %d]%s}
seed: 1
"""
VIDEO_SIZE = (1080, 1920)
CLIP_SECONDS = 4.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_project(
    root: Path, speech: Speech, preset: str | None, video: Path | None = None, size: tuple[int, int] = SIZE
) -> Path:
    """personas/demo (the repository's demo persona file, its portrait generated, or `video` as its source) and
    jobs/bench.yaml at `size`."""
    persona = root / "personas" / "demo"
    persona.mkdir(parents=True)
    text = (REPO / "personas" / "demo" / "persona.yaml").read_text()
    ensure_demo_portrait(persona)
    if video is not None:
        text = text.replace("source: portrait.png", f"source: {video.resolve()}")
    (persona / "persona.yaml").write_text(text)
    write_wav(root / "speech.wav", speech)
    jobs = root / "jobs"
    jobs.mkdir()
    (jobs / "bench.yaml").write_text(JOB % (*size, f", preset: {preset}" if preset else ""))
    return jobs


def talking_clip(root: Path, size: tuple[int, int], clip: Path | None) -> Path:
    """A talking video persona at `size`: `clip` scaled to cover it and cropped, or the demo portrait rendered
    speaking for CLIP_SECONDS by the preview engine (H.264 CRF 18, with its speech)."""
    from pipelines.media.ffmpeg import run_ffmpeg
    from pipelines.media.video_out import encode_final

    out = root / "clip.mp4"
    w, h = size
    if clip is not None:
        scale = f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},fps={FPS:g}"
        run_ffmpeg(
            ["-i", clip, "-vf", scale, "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-y", out]
        )
        return out
    n = int(CLIP_SECONDS * FPS)
    speech = make_speech(n)
    settings = RenderSettings(fps=FPS, size=size, seed=0, engine=PreviewSettings())
    engine = PreviewEngine()
    portrait = ensure_demo_portrait(root / "portrait")
    prep = engine.prepare(SimpleNamespace(source=portrait, source_kind="image"), settings, _MemoryCache())
    expression = build_expression_track([(0, None, "happy", 0.6)], n, FPS, seed=3)
    frames = (f.image for f in engine.render(prep, speech, expression, settings))
    return encode_final(frames, n, FPS, size, write_wav(root / "clip.wav", speech), out, preset="veryfast")


class _MemoryCache:
    def get_or_compute(self, _namespace, _key, compute):
        return compute()


def main() -> None:
    from pipelines import render
    from pipelines.cache import DiskArrayCache, FileHasher
    from pipelines.media.video_in import iter_frames
    from pipelines.media.video_out import encode_final
    from pipelines.render import DRAFT_PRESETS, plan_job, render_job
    from pipelines.spec.loader import load_batch

    ap = argparse.ArgumentParser()
    ap.add_argument("n_frames", nargs="?", type=int, default=750)
    ap.add_argument("--preset", default=None, help="x264 preset (default: the preview engine's draft preset)")
    ap.add_argument("--repeat", type=int, default=3, help="whole-job runs; the median is reported")
    ap.add_argument(
        "--video",
        nargs="?",
        const="",
        default=None,
        metavar="CLIP",
        help="a video persona: CLIP scaled to --size, or a clip generated here",
    )
    ap.add_argument("--size", default=None, help="output WxH (default 512x512, with --video 1080x1920)")
    ap.add_argument("--no-qc", action="store_true", help="skip the runs with QC")
    ap.add_argument("--by-process", action="store_true", help="one more job each, CPU split by process")
    args = ap.parse_args()
    n = args.n_frames
    preset = args.preset or DRAFT_PRESETS["preview"]
    # (an older tree, measured side by side with this one, has no draft x264 options)
    x264_params = None if args.preset else getattr(render, "DRAFT_X264_PARAMS", None)
    size = SIZE if args.video is None else VIDEO_SIZE
    if args.size:
        size = tuple(int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        video = None
        if args.video is not None:
            t = time.perf_counter()
            video = talking_clip(tmp, size, Path(args.video) if args.video else None)
            print(
                f"video persona: {args.video or 'generated'}, {size[0]}x{size[1]} ({time.perf_counter() - t:.1f} s)"
            )
        speech = make_speech(n)
        jobs = make_project(tmp, speech, args.preset, video, size)
        batch = load_batch([jobs])
        if batch.errors:
            raise SystemExit("; ".join(str(e) for e in batch.errors))
        loaded = batch.jobs[0]
        cache = DiskArrayCache(tmp / "cache")
        settings = RenderSettings(fps=FPS, size=size, seed=0, engine=PreviewSettings())
        engine = PreviewEngine()
        t = time.perf_counter()
        prep = engine.prepare(loaded.persona, settings, cache)
        t_prepare = time.perf_counter() - t

        runs, qc_runs = [], []
        modes = ((False, runs),) if args.no_qc else ((False, runs), (True, qc_runs))
        for _ in range(max(1, args.repeat)):
            for qc, into in modes:
                plan = plan_job(loaded, tmp / "out", FileHasher(), force=True)
                t, c, k = time.perf_counter(), time.process_time(), _children_cpu()
                record = render_job(plan, engine, cache, qc=qc)
                into.append((time.perf_counter() - t, time.process_time() - c, _children_cpu() - k, record))
        split = {}
        if args.by_process:
            for qc, _ in modes:
                plan = plan_job(loaded, tmp / "out", FileHasher(), force=True)
                split[qc] = _by_process(lambda plan=plan, qc=qc: render_job(plan, engine, cache, qc=qc))
        runs.sort(key=lambda run: run[0])
        qc_runs.sort(key=lambda run: run[0])
        t_best = runs[0][0]
        t_job, c_job, k_job, record = runs[len(runs) // 2]
        out_frames = record["frames"]["output"]

        expression = build_expression_track([(0, None, "happy", 0.7)], n, FPS, seed=1)
        t = time.perf_counter()
        for _ in engine.render(prep, speech, expression, settings):
            pass
        t_render = time.perf_counter() - t

        pool = [f for _, f in zip(range(50), iter_frames(plan.out_path), strict=False)]
        t = time.perf_counter()
        encode_final(
            (pool[i % len(pool)] for i in range(out_frames)),
            out_frames,
            FPS,
            size,
            tmp / "speech.wav",
            tmp / "floor.mp4",
            preset=preset,
            **({"x264_params": x264_params} if x264_params else {}),
        )
        t_encode = time.perf_counter() - t

    persona = "video persona" if video is not None else "portrait"
    x264 = f"x264 preset {preset}" + (f" + {x264_params}" if x264_params else "")
    print(
        f"preview job, {persona}, {size[0]}x{size[1]}, {out_frames} frames ({out_frames / FPS:.0f} s at {FPS:g} fps), {x264}"
    )
    print(f"  prepare (once per persona, cached):  {t_prepare:8.2f} s")
    print(
        f"  whole job (talkreel render path):    {out_frames / t_job:8.1f} frames/s  ({out_frames / FPS / t_job:.1f} x real time)"
        f"  median of {len(runs)}, best {out_frames / t_best:.1f}"
    )
    per_frame = 1000 * (c_job + k_job) / out_frames
    print(
        f"  whole job CPU per frame:             {per_frame:8.2f} ms = {1000 * c_job / out_frames:.2f} this process"
        f" + {1000 * k_job / out_frames:.2f} child processes (the engine's, ffmpeg)"
    )
    # Wall figures drop when other processes share the cores; CPU time says what the job itself costs.
    print(
        f"  bound on {os.cpu_count()} idle cores (CPU / cores):   {os.cpu_count() * 1000 / per_frame:8.1f} frames/s"
    )
    stages = ", ".join(f"{k} {v:.2f}" for k, v in record["timings"].items())
    print(f"  job stages (s):                      {stages}")
    print(f"  render alone (engine):               {n / t_render:8.1f} frames/s")
    print(f"  encode alone (the floor):            {out_frames / t_encode:8.1f} frames/s")
    print(f"  ratio whole job / floor:             {t_job / t_encode:8.2f} x the floor's time")
    bitrate = record["output_file"]["bytes"] * 8 / (out_frames / FPS) / 1e6
    print(f"  output bitrate (video and audio):    {bitrate:8.2f} Mbit/s")
    if qc_runs:
        _print_qc(qc_runs, out_frames, t_job)
    for qc, seconds in split.items():
        if not seconds:
            continue
        parts = sorted(seconds.items(), key=lambda kv: -kv[1])
        print(f"  CPU ms per frame by process, one more job{' with QC' if qc else ''}:")
        for kind, cpu in parts:
            print(f"    {kind:34s} {1000 * cpu / out_frames:6.2f}")
        print(f"    {'total':34s} {1000 * sum(seconds.values()) / out_frames:6.2f}")
    print(
        f"  load average at the end:             {' '.join(f'{v:.1f}' for v in os.getloadavg())} ({os.cpu_count()} cores)"
    )


def _by_process(run) -> dict[str, float]:
    """CPU seconds of run() by process kind (bench/process_cpu.py); {} where /proc is missing."""
    from process_cpu import ProcessCpu, available

    from pipelines.render import AUDIO_NICE

    if not available():
        return {}
    with ProcessCpu(
        lambda nice: "output audio child (niced)" if nice >= AUDIO_NICE else "engine child"
    ) as cpu:
        run()
    return cpu.split()


def _print_qc(qc_runs: list, out_frames: int, t_job: float) -> None:
    t_qc, c_qc, k_qc, qc_record = qc_runs[len(qc_runs) // 2]
    print(
        f"  whole job with QC:                   {out_frames / t_qc:8.1f} frames/s  median of {len(qc_runs)};"
        f" CPU per frame {1000 * (c_qc + k_qc) / out_frames:.2f} ms; qc stage {qc_record['timings']['qc']:.2f} s"
    )
    print(f"  ratio with QC / without QC:          {t_qc / t_job:8.3f} (wall, medians)")
    qc = qc_record["qc"]
    print(f"  QC figures ({qc['sampling']}, {qc['frames_measured']} of {qc['frames']} frames measured):")
    for key in ("mouth_audio_correlation", "silent_closed_share", "mouth_opening_mean", "mouth_opening_p95"):
        print(f"    {key:34s} {qc[key]}")
    for key in ("mouth_change_per_s", "av_offset_ms", "face_sharpness_median", "loudness_lufs"):
        print(f"    {key:34s} {qc[key]}")


if __name__ == "__main__":
    main()
