"""Mouth statistics of preview renders against real talking footage, and the video persona's frames/s.

Prints figures, asserts nothing. Needs a real talking-head video with its own speech (a path, or the shared
sample when present); other speech: espeak-ng text (with its phoneme timing, as a draft-text job animates it)
and the given audio files (default: the shared ones when present, animated from the signal); photo personas
(default: the demo portrait and the shared portraits when present), plus the video's first frame as a photo
with the video as its `mouths:` clip. Mouth openings are measured the way QC measures them
(pipelines.qc.measure: MediaPipe inner-lip gap over the pupil distance, video mode) on the source and on each
render. Figures:
- mean opening and mean frame-to-frame change of each render over the source video's own (goal 0.7-1.3x),
  both over the frames where the speech speaks (QC's pauses left out, so speeches with long silences compare
  fairly), for the video persona and for each photo persona (there against the real speaker's statistics);
- video persona: the correlation between the render's openings and those of the source frames it was made
  from (goal <= 0.2 when the audio differs: the source's speech is replaced);
- the share of silent frames (QC's pauses) with a closed mouth (QC's rule, goal >= 0.9);
- per photo persona, the measure's own noise: the change QC's mesh reads on a render whose mouth is held still
  at three of the real speaker's openings (part of every change figure of that persona, not motion of the render);
- frames/s of the engine alone on the video persona, with the mouth library and with the mouth warp it
  replaces (the path taken when the footage gives no library).
Usage: python bench/preview_mouth_stats.py [--video V] [--audio A...] [--photos P...] [--seconds S] [--no-video]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.engines.base import RenderSettings, loop_frame  # noqa: E402
from pipelines.engines.preview.engine import PreviewEngine  # noqa: E402
from pipelines.expression.build import build_expression_track  # noqa: E402
from pipelines.media.audio import load_audio  # noqa: E402
from pipelines.qc.figures import CLOSED_MARGIN, pause_frames, silent_frames  # noqa: E402
from pipelines.qc.measure import FrameMeter, frame_levels_db  # noqa: E402
from pipelines.spec.engines import PreviewSettings  # noqa: E402
from pipelines.speech.track import Speech  # noqa: E402

FPS = 25.0
RATE = 16000
SHARED = Path("/work/shared/data")
TEXT = (
    "Thanks for joining. Here is what changed this week, and why it matters. "
    "First, the numbers. Then, what we do next."
)


class _Cache:
    def __init__(self):
        self.store = {}

    def get_or_compute(self, namespace, key, compute):
        if (namespace, key) not in self.store:
            self.store[(namespace, key)] = compute()
        return self.store[(namespace, key)]


def _speech(samples: np.ndarray, seconds: float) -> Speech:
    n = int(round(seconds * FPS))
    need = int(round(n / FPS * RATE))
    samples = np.pad(samples[:need], (0, max(0, need - len(samples)))).astype(np.float32)
    return Speech(samples, RATE, FPS, n)


def _tts(seconds: float) -> Speech:
    """espeak-ng speech of TEXT with its phoneme timing (what a draft-text job animates), repeated with a pause
    between repeats (silences to close the mouth in) to `seconds`."""
    from math import gcd

    from scipy.signal import resample_poly

    from pipelines.speech.track import TimedUnit
    from pipelines.speech.tts import synthesize

    syn = synthesize(TEXT)
    g = gcd(RATE, syn.sample_rate)
    one = resample_poly(syn.samples, RATE // g, syn.sample_rate // g).astype(np.float32)
    one = np.concatenate([one, np.zeros(int(0.6 * RATE), np.float32)])
    n = int(round(seconds * FPS))
    reps = int(np.ceil(n / FPS * RATE / len(one)))
    length = len(one) / RATE
    units = tuple(
        TimedUnit(u.start + r * length, u.end + r * length, u.label)
        for r in range(reps)
        for u in syn.phonemes
    )
    return Speech(_speech(np.tile(one, reps), seconds).samples, RATE, FPS, n, units)


def _openings(frames) -> np.ndarray:
    with FrameMeter() as meter:
        return np.array([meter.measure(f)[0] for f in frames])


def _render(engine, prep, speech: Speech, settings: RenderSettings) -> tuple[list[np.ndarray], float]:
    expression = build_expression_track([], speech.n_frames, FPS, seed=0, idle=1.0)
    start = time.perf_counter()
    frames = [f.image for f in engine.render(prep, speech, expression, settings)]
    return frames, time.perf_counter() - start


def _measure_noise(engine, prep, n_frames: int, gaps: np.ndarray) -> float:
    """Mean frame-to-frame change QC's mesh measures on a photo render whose mouth is held still, a third of the
    frames at each of `gaps` (the same idle head motion and blinks as the speech renders; the steps between the
    thirds left out): what the measure adds to every change figure of that persona. It depends on the opening
    (a painted mouth the mesh fits unsteadily at some openings, the Mona Lisa's, shows it there)."""
    expression = build_expression_track([], n_frames, FPS, seed=0, idle=1.0)
    part = np.minimum(np.arange(n_frames) * len(gaps) // n_frames, len(gaps) - 1)
    curves = np.zeros((n_frames, 4))
    curves[:, 0] = np.asarray(gaps)[part]
    frames = [f.image for f in engine._render_still(prep, expression, curves, 0, n_frames)]
    same = part[1:] == part[:-1]
    return float(np.nanmean(np.abs(np.diff(_openings(frames)))[same]))


def _closed_share(openings: np.ndarray, speech: Speech) -> float:
    levels, _ = frame_levels_db(speech.samples, RATE, FPS, speech.n_frames)
    pauses = pause_frames(silent_frames(levels), FPS) & np.isfinite(openings)
    ok = openings[np.isfinite(openings)]
    if not pauses.any() or not len(ok):
        return float("nan")
    rest = float(np.percentile(ok, 5))
    return float((openings[pauses] <= rest + CLOSED_MARGIN).mean())


def _stats(openings: np.ndarray, speech: Speech) -> tuple[float, float]:
    """Mean opening and mean frame-to-frame change over the frames where the speech speaks (QC's pauses left
    out: speeches with long silences would otherwise look like small mouths)."""
    levels, _ = frame_levels_db(speech.samples, RATE, FPS, speech.n_frames)
    speaking = ~pause_frames(silent_frames(levels), FPS)[: len(openings)] & np.isfinite(openings)
    both = speaking[1:] & speaking[:-1]
    return float(openings[speaking].mean()), float(np.abs(np.diff(openings))[both].mean())


def _shared_photos() -> list[Path]:
    folder = SHARED / "personas"
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


def _shared_audio() -> list[Path]:
    folder = SHARED / "audio"
    return sorted(folder.glob("*.wav")) if folder.is_dir() else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", type=Path, default=SHARED / "clips" / "latentsync_demo1_video.mp4")
    ap.add_argument(
        "--audio", type=Path, nargs="*", default=None, help="other speech files (default: the shared ones)"
    )
    ap.add_argument(
        "--photos",
        type=Path,
        nargs="*",
        default=None,
        help="photo personas (default: demo + shared portraits)",
    )
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument(
        "--no-video", action="store_true", help="photo personas only (the 1080p renders are slow)"
    )
    args = ap.parse_args()
    if not args.video.is_file():
        sys.exit(f"{args.video}: no talking video (give one with --video)")

    from pipelines.engines.preview.demo import ensure_demo_portrait
    from pipelines.media.video_in import open_source

    seconds = args.seconds
    own = _speech(load_audio(args.video, RATE), seconds)
    others = {"espeak text": _tts(seconds)}
    for path in _shared_audio() if args.audio is None else args.audio:
        others[path.stem] = _speech(load_audio(path, RATE), seconds)
    settings = RenderSettings(fps=FPS, size=None, seed=0, engine=PreviewSettings())
    engine = PreviewEngine()
    video = engine.prepare(SimpleNamespace(source=args.video, source_kind="video"), settings, _Cache())
    src = open_source(args.video, FPS, None)
    n_src = min(len(src), video.n_source)
    source_open = _openings(src.frames(0, n_src))
    shown = np.array([loop_frame(k, n_src, "pingpong") for k in range(own.n_frames)])
    src_mean, src_change = _stats(source_open[shown], own)
    print(
        f"video persona {args.video.name}: {video.size[0]}x{video.size[1]}, {n_src} source frames, {seconds} s"
    )
    print(f"  source: mean opening {src_mean:.3f}, mean change {src_change:.4f} per frame")
    print(f"  source closed share in its own pauses: {_closed_share(source_open[shown], own):.2f}")
    print(
        "  (opening and change: the render's over the source video's own; espeak text: with its phoneme timing)"
    )
    header = f"  {'persona':30s} {'speech':24s} opening  change  corr(source)  closed in silence"
    if not args.no_video:
        print(f"  mouth library: {engine.describe().get('mouths')}")
        print(header)
        for label, speech in {"own audio": own, **others}.items():
            frames, _ = _render(engine, video, speech, settings)
            opens = _openings(frames)
            mean, change = _stats(opens, speech)
            ok = np.isfinite(opens) & np.isfinite(source_open[shown[: len(opens)]])
            corr = float(np.corrcoef(opens[ok], source_open[shown[: len(opens)]][ok])[0, 1])
            print(
                f"  {args.video.name[:30]:30s} {label[:24]:24s} {mean / src_mean:6.2f}x  {change / src_change:5.2f}x"
                f"  {corr:12.2f}  {_closed_share(opens, speech):17.2f}"
            )

    # photo personas against the statistics of the real speaker (the video's own)
    scratch = tempfile.TemporaryDirectory(prefix="talkreel-stats-")  # (removed when the script ends)
    photos = args.photos
    if photos is None:
        photos = [ensure_demo_portrait(Path(scratch.name))] + _shared_photos()
    personas = [(p.name, SimpleNamespace(source=p, source_kind="image")) for p in photos]
    # the video's first frame as a photo, with the video as its mouths: clip (the same person talking)
    first = Path(scratch.name) / f"{args.video.stem}_frame0.png"
    cv2.imwrite(str(first), next(iter(src.frames(0, 1)))[..., ::-1])
    personas.append(
        (f"{first.name} + mouths", SimpleNamespace(source=first, source_kind="image", mouths=args.video))
    )
    photo_settings = RenderSettings(fps=FPS, size=(512, 512), seed=0, engine=PreviewSettings())
    # the openings the noise is measured at: the real speaker's 25th, 50th and 90th percentile while speaking
    speaking = source_open[shown][np.isfinite(source_open[shown]) & (source_open[shown] > 0.02)]
    held = np.percentile(speaking, [25, 50, 90])
    print(f"  (measure noise: the mouth held at gaps {', '.join(f'{g:.3f}' for g in held)}, a third each)")
    print(header.replace("corr(source)", "            "))
    for name, persona in personas:
        photo = engine.prepare(persona, photo_settings, _Cache())
        noise = _measure_noise(engine, photo, own.n_frames, held)
        print(f"  {name[:30]:30s} (measure noise: change {noise / src_change:.2f}x, mouth held still)")
        for label, speech in {"the video's audio": own, **others}.items():
            frames, _ = _render(engine, photo, speech, photo_settings)
            opens = _openings(frames)
            mean, change = _stats(opens, speech)
            print(
                f"  {name[:30]:30s} {label[:24]:24s} {mean / src_mean:6.2f}x  {change / src_change:5.2f}x"
                f"  {'':12s}  {_closed_share(opens, speech):17.2f}"
            )
    if args.no_video:
        return

    short = _speech(others["espeak text"].samples, min(seconds, 4.0))
    _, library_s = _render(engine, video, short, settings)
    library = video.mouths
    video.mouths = None  # the path without a library: the whole face warped
    _, warp_s = _render(engine, video, short, settings)
    video.mouths = library
    print(f"  engine frames/s at {video.size[0]}x{video.size[1]} (wall, {short.n_frames} frames):")
    print(f"    with the mouth library {short.n_frames / library_s:6.1f}")
    print(f"    mouth warp (no library) {short.n_frames / warp_s:6.1f}")


if __name__ == "__main__":
    main()
