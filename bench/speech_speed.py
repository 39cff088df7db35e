"""Speech speed: espeak-ng draft TTS real-time factor, script alignment time per minute, mouth curves.

"align MiB" is the traced peak of Python/numpy allocations during align_script (includes its own TTS run).

Run: .venv/bin/python bench/speech_speed.py [--minutes 1 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.speech.align import align_script  # noqa: E402
from pipelines.speech.mouth import mouth_curves  # noqa: E402
from pipelines.speech.track import Speech  # noqa: E402
from pipelines.speech.tts import synthesize  # noqa: E402

SENTENCES = [
    "Welcome to this short summary of the quarterly results.",
    "Revenue grew by twelve percent, mostly from the new subscription plans.",
    "Costs stayed flat, although shipping became more expensive in the spring.",
    "We hired forty people, half of them in support and operations.",
    "Next quarter we will focus on reliability and on the mobile app.",
    "Thank you for watching, and send us your questions.",
]


def script_of(minutes: float) -> str:
    # espeak reads ~150 words per minute including pauses; overshoot, then trim by measured duration.
    words_needed = int(minutes * 170)
    out: list[str] = []
    k = 0
    while sum(len(s.split()) for s in out) < words_needed:
        out.append(SENTENCES[k % len(SENTENCES)])
        k += 1
    return " ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 3.0])
    args = parser.parse_args()
    synthesize("warm up")
    print(
        f"{'speech':>8} {'tts s':>7} {'tts xRT':>8} {'align s':>8} {'align s/min':>11} "
        f"{'cpu s/min':>9} {'align MiB':>9} {'mouth s':>8}"
    )
    for minutes in args.minutes:
        text = script_of(minutes)
        t0 = time.perf_counter()
        draft = synthesize(text)
        tts_s = time.perf_counter() - t0
        # The "recording": another voice, slower, higher, with a pause after every sentence.
        rec = synthesize(text, voice="en+f3", rate_wpm=150, pitch=65)
        sr = rec.sample_rate
        pieces, last = [], 0
        for w in rec.words:
            if w.label.endswith(("results", "plans", "spring", "operations", "app", "questions")):
                cut = int(w.end * sr)
                pieces += [rec.samples[last:cut], np.zeros(int(0.6 * sr), np.float32)]
                last = cut
        pieces.append(rec.samples[last:])
        recording = np.concatenate(pieces)
        rec_min = len(recording) / sr / 60
        tracemalloc.start()
        t0, c0 = time.perf_counter(), time.process_time()
        phonemes, words = align_script(recording, sr, text)
        align_s, align_cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        fps = 25.0
        n_frames = int(len(recording) / sr * fps)
        speech = Speech(recording[: int(n_frames / fps * sr)], sr, fps, n_frames, phonemes, words)
        t0 = time.perf_counter()
        mouth_curves(speech)
        mouth_s = time.perf_counter() - t0
        print(
            f"{draft.duration:7.1f}s {tts_s:7.2f} {draft.duration / tts_s:8.0f} {align_s:8.2f} "
            f"{align_s / rec_min:11.2f} {align_cpu / rec_min:9.2f} {peak:9.0f} {mouth_s:8.2f}"
            f"   (recording {rec_min * 60:.0f} s, alignment figures per minute of recording)"
        )


if __name__ == "__main__":
    main()
