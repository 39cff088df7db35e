"""The output's audio timeline: silence (or the spoken question) under cards, then the clip's audio.

Written block by block as 16-bit mono PCM at 48 kHz; segment boundaries fall on the samples of the frame
boundaries (round(frame * 48000 / fps)), so the audio lasts exactly n_frames / fps and stays in sync.
"""

from __future__ import annotations

import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.media.audio import OUTPUT_RATE, iter_audio_blocks, sample_count


@dataclass(frozen=True)
class AudioSegment:
    first_frame: int
    n_frames: int
    source: Path | np.ndarray | None  # a file streamed at 48 kHz, samples at 48 kHz, or silence


def _blocks(source: Path | np.ndarray | None) -> Iterator[np.ndarray]:
    if source is None:
        return
    if isinstance(source, np.ndarray):
        yield source.astype(np.float32)
        return
    yield from iter_audio_blocks(source, OUTPUT_RATE)


def _exactly(blocks: Iterable[np.ndarray], n: int, block: int = OUTPUT_RATE) -> Iterator[np.ndarray]:
    left = n
    for chunk in blocks:
        if left <= 0:
            break
        piece = chunk[:left]
        left -= len(piece)
        yield piece
    while left > 0:
        step = min(left, block)
        left -= step
        yield np.zeros(step, np.float32)


def write_timeline(segments: list[AudioSegment], fps: float, out_path: Path) -> Path:
    """Write the segments (in order, contiguous) as one wav of exactly the frames' duration."""
    with wave.open(str(out_path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(OUTPUT_RATE)
        for seg in segments:
            start = sample_count(seg.first_frame, fps, OUTPUT_RATE)
            end = sample_count(seg.first_frame + seg.n_frames, fps, OUTPUT_RATE)
            for piece in _exactly(_blocks(seg.source), end - start):
                pcm = np.clip(np.round(piece * 32767.0), -32768, 32767).astype("<i2")
                wav.writeframes(pcm.tobytes())
    return out_path
