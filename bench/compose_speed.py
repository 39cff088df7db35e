"""Compositor speed and invisible-watermark survival, printed as figures.

    python bench/compose_speed.py                 # both
    python bench/compose_speed.py --watermark     # survival only
    python bench/compose_speed.py --speed         # compositor and watermark ms per frame only (single-threaded)

Watermark survival: frames are marked, encoded once as talkreel's final encode does (libx264 CRF 18, yuv420p,
through pipelines.media.encode_final), then re-encoded the way a user might (CRF 23 same size, CRF 28, a 2/3
downscale at CRF 23). For each stage: the share of frames whose own 48 bits pass the CRC with the right id,
mean wrong bits per frame, and whether the majority vote over the frames (what `talkreel verify` does) gives
the right id. Two sources: the synthetic test clip and a slowly panning crop of skimage's astronaut portrait.
For the U plane the same stages follow for frames marked the way a render marks them: on their way into x264
(SegmentWriter(watermark=...), the chroma plane).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

# One thread per library: the compositor's figure is single-threaded CPU time (set before numpy loads BLAS).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.media.audio import OUTPUT_RATE  # noqa: E402
from pipelines.media.ffmpeg import run_ffmpeg  # noqa: E402
from pipelines.media.video_in import iter_frames  # noqa: E402
from pipelines.media.video_out import I420Frames, encode_final  # noqa: E402
from pipelines.provenance.watermark import (  # noqa: E402
    DEFAULT_SCALE,
    Watermarker,
    id_from_bits,
    payload_bits,
    read_scores,
    vote,
)

WM_ID = "3fa2c901"


def synthetic(n: int, size: tuple[int, int]):
    import cv2

    from tests.compose_helpers import clip_frame

    return [cv2.resize(clip_frame(i), size, interpolation=cv2.INTER_LINEAR) for i in range(n)]


def astronaut(n: int, size: tuple[int, int]):
    import cv2
    from skimage import data

    image = data.astronaut()  # 512x512 portrait
    w, h = size
    big = cv2.resize(image, (int(w * 1.2), int(w * 1.2)), interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(n):  # a slow pan, wrapping round inside the picture however many frames are asked for
        x = 4 * i % (big.shape[1] - w + 1)
        y = (int(0.1 * big.shape[0]) + 2 * i) % (big.shape[0] - h + 1)
        frames.append(np.ascontiguousarray(big[y : y + h, x : x + w]))
    return frames


def _silence(folder: Path, seconds: float) -> Path:
    from tests.compose_helpers import write_wav

    return write_wav(
        folder / "silence.wav", np.zeros(int(seconds * OUTPUT_RATE) + 1, np.float32), OUTPUT_RATE
    )


def _reencode(src: Path, dst: Path, crf: int, scale: float | None = None) -> Path:
    vf = ["-vf", f"scale=trunc(iw*{scale}/2)*2:trunc(ih*{scale}/2)*2"] if scale else []
    run_ffmpeg(
        [
            "-i",
            src,
            *vf,
            "-c:v",
            "libx264",
            "-crf",
            str(crf),
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "copy",
            "-y",
            dst,
        ]
    )
    return dst


def _stage(frames, channel: str, scale: float) -> str:
    truth = payload_bits(WM_ID)
    exact, wrong = 0, []
    for frame in frames:
        scores = read_scores(frame, scale=scale, channel=channel)
        bits = (scores > 0.5).astype(np.uint8)
        wrong.append(int((bits != truth).sum()))
        exact += id_from_bits(bits) == WM_ID
    reading = vote(frames, scale=scale, channel=channel)
    ok = (
        "yes"
        if reading.wm_id == WM_ID
        else ("no (no id)" if reading.wm_id is None else f"WRONG id {reading.wm_id}")
    )
    return f"frames exact {exact:3d}/{len(frames)}  mean wrong bits {np.mean(wrong):5.1f}/48  vote -> {ok}"


def watermark_survival(
    n: int,
    size: tuple[int, int],
    channels: tuple[str, ...],
    scales: tuple[float, ...],
    sources: tuple[str, ...],
) -> None:
    fps = 25.0
    makers = {"synthetic": synthetic, "astronaut": astronaut}
    for source_name in sources:
        clean = makers[source_name](n, size)
        for channel, scale in [(c, s) for c in channels for s in scales]:
            marker = Watermarker(WM_ID, scale=scale, channel=channel)
            marked = [marker.embed(f) for f in clean]
            print(
                f"\n{source_name} {size[0]}x{size[1]}, {n} frames, channel {channel}, scale {scale:g}, "
                f"PSNR {_psnr(marked, clean):.1f} dB"
            )
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                final = encode_final(
                    iter(marked), n, fps, size, _silence(folder, n / fps), folder / "final.mp4", crf=18
                )
                print(f"  {'lossless (before encode)':32s} {_stage(marked, channel, scale)}")
                _after_encode(final, folder, channel, scale)
            if channel != "U":
                continue
            # what a render does: the frames marked on their way into x264, on its chroma plane
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                silence = _silence(folder, n / fps)
                plain = encode_final(iter(clean), n, fps, size, silence, folder / "plain.mp4", crf=18)
                final = encode_final(
                    iter(clean), n, fps, size, silence, folder / "final.mp4", crf=18, watermark=marker
                )
                shown = _psnr(list(iter_frames(final)), list(iter_frames(plain)))
                print(
                    f"  marked by the encoder (the render's path), PSNR {shown:.1f} dB against the same encode"
                )
                _after_encode(final, folder, channel, scale)


def _psnr(marked: list[np.ndarray], clean: list[np.ndarray]) -> float:
    """Mean PSNR over frame pairs (the tests' own measure)."""
    from tests.compose_helpers import psnr

    return float(np.mean([psnr(m, c) for m, c in zip(marked, clean, strict=True)]))


def _after_encode(final: Path, folder: Path, channel: str, scale: float) -> None:
    stages = [
        ("final encode CRF 18", final),
        ("+ user re-encode CRF 23", _reencode(final, folder / "r23.mp4", 23)),
        ("+ user re-encode CRF 28", _reencode(final, folder / "r28.mp4", 28)),
        ("+ user downscale 2/3, CRF 23", _reencode(final, folder / "small.mp4", 23, scale=2 / 3)),
    ]
    for name, path in stages:
        print(f"  {name:32s} {_stage(list(iter_frames(path)), channel, scale)}")


def package_survival(n: int, size: tuple[int, int], sources: tuple[str, ...]) -> None:
    """The invisible-watermark package's own encoder/decoder at its defaults, through the same stages."""
    import cv2
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    payload = bytes.fromhex(WM_ID) + bytes.fromhex("13d6")  # the same 48 bits talkreel carries
    truth = np.unpackbits(np.frombuffer(payload, np.uint8))
    makers = {"synthetic": synthetic, "astronaut": astronaut}
    for source_name in sources:
        clean = makers[source_name](n, size)
        for method in ("dwtDct", "dwtDctSvd"):
            encoder = WatermarkEncoder()
            encoder.set_watermark("bytes", payload)
            t0 = time.process_time()
            marked = [
                cv2.cvtColor(encoder.encode(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), method), cv2.COLOR_BGR2RGB)
                for f in clean
            ]
            per_frame = (time.process_time() - t0) / n
            decoder = WatermarkDecoder("bytes", len(truth))

            def stage(frames, decoder=decoder, method=method) -> str:
                bits = [
                    np.unpackbits(
                        np.frombuffer(decoder.decode(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), method), np.uint8)
                    )
                    for f in frames
                ]
                exact = sum(int((b == truth).all()) for b in bits)
                voted = (np.mean(bits, axis=0) > 0.5).astype(np.uint8)
                wrong = np.mean([(b != truth).sum() for b in bits])
                ok = "yes" if (voted == truth).all() else "no"
                return f"frames exact {exact:3d}/{len(frames)}  mean wrong bits {wrong:5.1f}/48  vote -> {ok}"

            print(
                f"\n{source_name} {size[0]}x{size[1]}, package imwatermark {method} defaults, {per_frame * 1000:.0f} ms/frame"
            )
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                final = encode_final(
                    iter(marked), n, 25.0, size, _silence(folder, n / 25.0), folder / "final.mp4", crf=18
                )
                print(f"  {'final encode CRF 18':32s} {stage(list(iter_frames(final)))}")
                r23 = _reencode(final, folder / "r23.mp4", 23)
                print(f"  {'+ user re-encode CRF 23':32s} {stage(list(iter_frames(r23)))}")


def _ms_per_call(fn, calls: int) -> float:
    """Milliseconds of this process's CPU time per call, the best of three runs of `calls` calls."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - t0) / calls)
    return best * 1000


def speed(n: int, sizes: tuple[tuple[int, int], ...]) -> None:
    """Compositor CPU time per frame of a summary job (label, burned-in captions, a chapter lower third) on one
    thread, and what its parts cost: the render loop runs the compositor on its own thread beside the engine."""
    import cv2

    from pipelines.speech.track import TimedUnit
    from tests.compose_helpers import FPS

    cv2.setNumThreads(1)
    clip = synthetic(n, (512, 512))
    words = tuple(TimedUnit(0.2 + 0.3 * i, 0.45 + 0.3 * i, f"word{i}") for i in range(int(n / FPS / 0.3) - 1))
    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    print(f"single-threaded (cv2.setNumThreads(1), OPENBLAS_NUM_THREADS={threads}), {n} clip frames")
    for size in sizes:
        _speed_at(clip, words, size)


def _speed_at(clip: list[np.ndarray], words, size: tuple[int, int]) -> None:
    from pipelines.compose.plan import plan_composition
    from pipelines.spec.compose import CompositionFields
    from tests.compose_helpers import FPS, make_speech, tone, write_wav

    n = len(clip)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wav = write_wav(folder / "clip.wav", tone(n / FPS, OUTPUT_RATE), OUTPUT_RATE)
        job = CompositionFields.model_validate(
            {"chapters": [{"at": 0.5, "text": "Chapter one", "duration": 2}], "captions": {"burn_in": True}}
        )
        plan = plan_composition(
            job,
            "summary",
            "Bench",
            None,
            (512, 512),
            FPS,
            make_speech(n, words),
            wav,
            folder,
            wm_id=WM_ID,
            size=size,
        )
    deque(plan.frames(iter(clip)), maxlen=0)  # warm up: caption panels rendered, caches filled
    # CPU time of this process: on a shared machine wall time mostly measures the neighbours.
    whole = _ms_per_call(lambda: deque(plan.frames(iter(clip)), maxlen=0), 1) / plan.n_frames
    probe = next(iter(plan.frames(iter(clip))))
    marker = Watermarker(WM_ID)
    frame = probe.copy()
    embed = _ms_per_call(lambda: marker.embed_in_place(frame), 100)
    embed_copy = _ms_per_call(lambda: marker.embed(probe), 100)
    plain, marking = I420Frames(size), I420Frames(size, marker)
    i420 = _ms_per_call(lambda: plain(probe), 100)
    i420_marked = _ms_per_call(lambda: marking(probe), 100)
    read = _ms_per_call(lambda: read_scores(probe), 100)
    label = _ms_per_call(lambda: plan._label.blend_onto(frame), 100)
    caption = plan._caption_overlay(plan.captions[0])
    cap = _ms_per_call(lambda: caption.blend_onto(frame), 100)
    print(
        f"compose {size[0]}x{size[1]} summary (label, captions, lower third): {whole:.3f} ms/frame "
        f"({1000 / whole:.0f} frames/s of CPU time)\n"
        f"  watermark: a render's, on the way into x264, {i420_marked - i420:.3f} ms (the I420 conversion "
        f"{i420:.3f} ms alone, {i420_marked:.3f} with it); on the RGB frame in place {embed:.3f} ms (with its "
        f"copy {embed_copy:.3f}); read {read:.3f} ms\n"
        f"  label blend {label:.3f} ms, caption blend {cap:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--watermark", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument(
        "--package", action="store_true", help="also the invisible-watermark package's own encoders"
    )
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--channels", default="U,Y", help="planes to compare (U is talkreel's default)")
    parser.add_argument(
        "--scales",
        default=f"{DEFAULT_SCALE:g}",
        help=f"quantisation steps to compare (talkreel embeds at {DEFAULT_SCALE:g}; imwatermark's own is 36)",
    )
    parser.add_argument("--sources", default="synthetic,astronaut")
    parser.add_argument("--speed-sizes", default="512x512,1280x720", help="output sizes for --speed")
    args = parser.parse_args()
    both = not (args.watermark or args.speed)
    if args.watermark or both:
        w, h = (int(v) for v in args.size.split("x"))
        scales = tuple(float(v) for v in args.scales.split(","))
        watermark_survival(
            args.frames, (w, h), tuple(args.channels.split(",")), scales, tuple(args.sources.split(","))
        )
    if args.package:
        w, h = (int(v) for v in args.size.split("x"))
        package_survival(args.frames, (w, h), tuple(args.sources.split(",")))
    if args.speed or both:
        print()
        sizes = tuple(tuple(int(v) for v in s.split("x")) for s in args.speed_sizes.split(","))
        speed(max(args.frames, 100), sizes)


if __name__ == "__main__":
    main()
