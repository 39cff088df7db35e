"""Speech audio for one job: decode anything ffmpeg reads, join with pauses, loudness-normalise, fix the length.

The job's frame count is decided here, once: n_frames = round(duration * fps) from the joined audio, and both
audio copies (16 kHz samples for the engines, a 48 kHz wav for the output track) are cut or padded to exactly
n_frames / fps. Long audio is streamed to disk in blocks, so memory does not grow with the 48 kHz track.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.ahead import InThread
from pipelines.errors import InputError
from pipelines.media.atomic import move_into_place, temp_path_for
from pipelines.media.ffmpeg import FFmpegError, FFmpegPipe, run_ffmpeg

if TYPE_CHECKING:
    from pipelines.media.loudness import LoudnessMeter

OUTPUT_RATE = 48_000
FEATURE_RATE = 16_000
DEFAULT_TARGET_LUFS = -16.0
DEFAULT_TRUE_PEAK = -1.5
DEFAULT_LRA = 11.0
# Integrated loudness below this is silence (EBU R128's absolute gate is -70 LUFS): there is nothing to normalise.
SILENCE_LUFS = -70.0
_BLOCK_BYTES = 1 << 20
_PEAK_MARGIN_DB = 0.1
# Copies of a sub-0.4 s clip to measure: 50 x the shortest clip that still makes one frame is over 0.4 s.
_SHORT_CLIP_LOOPS = 49


@dataclass(frozen=True)
class RawAudio:
    """Samples already in memory (e.g. draft TTS from pipelines.speech): mono float32 at `sample_rate`."""

    samples: np.ndarray
    sample_rate: int


AudioPiece = str | os.PathLike | float | int | RawAudio
"""A file path (any format ffmpeg reads), a pause in seconds, or RawAudio."""


@dataclass(frozen=True)
class Loudness:
    """EBU R128 figures as ffmpeg's loudnorm filter reports them."""

    integrated: float  # LUFS
    true_peak: float  # dBTP
    lra: float  # LU
    threshold: float  # LUFS
    offset: float = 0.0  # target offset loudnorm wants for its second pass

    @property
    def silent(self) -> bool:
        return not math.isfinite(self.true_peak) or self.true_peak <= SILENCE_LUFS

    @property
    def gated_out(self) -> bool:
        """Audible but too short for one 400 ms gating block, so R128 has no integrated figure."""
        return not self.silent and not math.isfinite(self.integrated)


def frame_count(duration: float, fps: float) -> int:
    """The number of video frames for `duration` seconds: round(duration * fps), decided once per job."""
    return int(round(duration * fps))


def sample_count(n_frames: int, fps: float, sample_rate: int) -> int:
    """Samples of audio that last exactly n_frames / fps at `sample_rate` (to the nearest sample)."""
    return int(round(n_frames * sample_rate / fps))


def pad_or_trim(samples: np.ndarray, n_samples: int) -> np.ndarray:
    """Exactly `n_samples` along the first axis: trailing silence added or the tail cut."""
    if len(samples) >= n_samples:
        return samples[:n_samples]
    pad = np.zeros((n_samples - len(samples), *samples.shape[1:]), dtype=samples.dtype)
    return np.concatenate([samples, pad])


def _decode_args(path: Path, sample_rate: int, mono: bool) -> list[str]:
    return [
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-vn",
        *(["-ac", "1"] if mono else []),
        "-ar",
        str(sample_rate),
        "-f",
        "f32le",
        "-acodec",
        "pcm_f32le",
        "pipe:1",
    ]


def _check_readable(path: Path) -> None:
    if not path.is_file():
        raise InputError(path, None, f"audio file {path.name!r} not found")
    if path.stat().st_size == 0:
        raise InputError(path, None, f"audio file {path.name!r} is empty")


def _as_input_error(path: Path, exc: FFmpegError) -> InputError:
    tail = exc.stderr_tail.lower()
    if "matches no streams" in tail or "stream map" in tail:
        return InputError(path, None, f"{path.name!r} has no audio stream")
    last = exc.stderr_tail.strip().splitlines()[-1] if exc.stderr_tail.strip() else "ffmpeg could not read it"
    return InputError(path, None, f"cannot decode audio file {path.name!r} ({last.strip()})")


def iter_audio_blocks(path: str | os.PathLike, sample_rate: int, mono: bool = True) -> Iterator[np.ndarray]:
    """Decode `path` through the ffmpeg binary, yielding float32 blocks (frames x channels when not mono)."""
    path = Path(path)
    _check_readable(path)
    pipe = FFmpegPipe(_decode_args(path, sample_rate, mono), what=f"decode {path.name}", stdout=True)
    try:
        carry = b""
        assert pipe.proc.stdout is not None
        while True:
            chunk = pipe.proc.stdout.read(_BLOCK_BYTES)
            if not chunk:
                break
            data = carry + chunk
            usable = len(data) - len(data) % 4
            carry = data[usable:]
            if usable:
                block = np.frombuffer(data[:usable], dtype="<f4").astype(np.float32)
                if not np.isfinite(block).all():
                    # A float WAV can carry NaN/infinity: it would be clipped to full scale in the output and
                    # poison every loudness figure, so the file is refused rather than guessed at.
                    raise InputError(
                        path, None, f"{path.name!r} has non-finite samples (NaN or infinity); re-export it"
                    )
                yield block
        pipe.finish()
    except FFmpegError as exc:
        raise _as_input_error(path, exc) from None
    except BaseException:
        pipe.abort()
        raise


def load_audio(path: str | os.PathLike, sample_rate: int, mono: bool = True) -> np.ndarray:
    """All of `path` as float32 at `sample_rate`: shape (n,) when mono, (n, channels) otherwise.

    InputError names the file when it is missing, empty, has no audio stream or cannot be decoded.
    """
    path = Path(path)
    blocks = list(iter_audio_blocks(path, sample_rate, mono))
    flat = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if mono:
        samples = flat
    else:
        channels = _channel_count(path)
        samples = flat.reshape(-1, channels)
    if len(samples) == 0:
        raise InputError(path, None, f"the audio stream of {path.name!r} has no samples")
    return samples


def _channel_count(path: Path) -> int:
    from pipelines.media.probe import probe

    info = probe(path)
    if not info.has_audio or not info.channels:
        raise InputError(path, None, f"{path.name!r} has no audio stream")
    return info.channels


def _resample_raw(piece: RawAudio, sample_rate: int, what: str) -> np.ndarray:
    samples = np.asarray(piece.samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"{what}: raw samples must be mono (1-D), got shape {samples.shape}")
    if piece.sample_rate == sample_rate or len(samples) == 0:
        return samples
    # The same resampler as every file goes through (ffmpeg's), so a draft and a recording sound alike.
    return _resampled_f32(
        "pipe:0", piece.sample_rate, sample_rate, f"resample {what}", samples.astype("<f4").tobytes()
    )


def _resampled_f32(
    source: str | os.PathLike, rate: int, sample_rate: int, what: str, data: bytes | None = None
) -> np.ndarray:
    """Mono float32 samples at `rate` (a raw f32le file, or `data` through "pipe:0") resampled by ffmpeg."""
    proc = run_ffmpeg(
        ["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", os.fspath(source)]
        + ["-ar", str(sample_rate), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"],
        what=what,
        input=data,
        capture_stdout=True,
    )
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


def iter_joined(pieces: Iterable[AudioPiece], sample_rate: int) -> Iterator[np.ndarray]:
    """The pieces in order as mono float32 blocks at `sample_rate`; a number is a pause of that many seconds."""
    for index, piece in enumerate(pieces):
        if isinstance(piece, bool):
            raise TypeError(
                f"audio piece {index}: expected a path, a pause in seconds or RawAudio, got a bool"
            )
        if isinstance(piece, (int, float)):
            if not math.isfinite(piece) or piece < 0:
                raise InputError(None, f"audio[{index}]", f"pause must be >= 0 seconds, got {piece}")
            n = int(round(piece * sample_rate))
            while n > 0:
                block = min(n, _BLOCK_BYTES // 4)
                yield np.zeros(block, np.float32)
                n -= block
        elif isinstance(piece, RawAudio):
            yield _resample_raw(piece, sample_rate, f"audio[{index}]")
        elif isinstance(piece, (str, os.PathLike)):
            yield from iter_audio_blocks(piece, sample_rate, mono=True)
        else:
            raise TypeError(f"audio piece {index}: unsupported type {type(piece).__name__}")


def join_segments(pieces: Iterable[AudioPiece], sample_rate: int) -> np.ndarray:
    """All pieces joined in memory (mono float32 at `sample_rate`); join_audio streams the same join to disk."""
    blocks = list(iter_joined(pieces, sample_rate))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _loudnorm_json(stderr: str, what: str) -> dict:
    # loudnorm prints its figures as the last {...} block on stderr.
    matches = re.findall(r"\{[^{}]*\}", stderr)
    if not matches:
        raise RuntimeError(f"{what}: ffmpeg's loudnorm printed no JSON figures")
    return json.loads(matches[-1])


def _num(value: str) -> float:
    return float(value)  # loudnorm writes "-inf" for silence; float() reads it


def _loudness_from(figures: dict, prefix: str) -> Loudness:
    return Loudness(
        integrated=_num(figures[f"{prefix}_i"]),
        true_peak=_num(figures[f"{prefix}_tp"]),
        lra=_num(figures[f"{prefix}_lra"]),
        threshold=_num(figures[f"{prefix}_thresh"]),
        offset=_num(figures.get("target_offset", "0")),
    )


def _loudnorm_target(target_lufs: float, true_peak: float, lra: float) -> str:
    return f"loudnorm=I={target_lufs:g}:TP={true_peak:g}:LRA={lra:g}"


def measure_loudness(
    input_args: list[str] | str | os.PathLike,
    target_lufs: float = DEFAULT_TARGET_LUFS,
    true_peak: float = DEFAULT_TRUE_PEAK,
    lra: float = DEFAULT_LRA,
) -> Loudness:
    """EBU R128 loudness of the first audio stream (loudnorm's first pass). Accepts a path or ffmpeg input args."""
    args = ["-i", os.fspath(input_args)] if isinstance(input_args, (str, os.PathLike)) else list(input_args)
    proc = run_ffmpeg(
        [*args, "-map", "0:a:0", "-af", _loudnorm_target(target_lufs, true_peak, lra) + ":print_format=json"]
        + ["-f", "null", "-"],
        what="loudness measurement",
        loglevel="info",
    )
    return _loudness_from(_loudnorm_json(proc.stderr.decode("utf-8", "replace"), "loudness"), "input")


def _raw_blocks(raw: Path) -> Iterator[np.ndarray]:
    with open(raw, "rb") as f:
        while block := f.read(_BLOCK_BYTES):
            yield np.frombuffer(block, "<f4")


def _write_wav(blocks: Iterable[np.ndarray], out_wav: Path, n_samples: int, meter=None) -> None:
    """Mono 48 kHz pcm_s16le of exactly `n_samples` (the blocks cut, or padded with silence), written to a temp
    name and moved into place; `meter` (a LoudnessMeter) is fed what is written."""
    import wave

    temp = temp_path_for(out_wav)
    try:
        with wave.open(str(temp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(OUTPUT_RATE)
            left = n_samples
            for block in itertools.chain(blocks, _silence(n_samples)):
                block = block[:left]
                if not len(block):
                    break
                # ffmpeg's float -> s16 conversion: scale by 2^15, round to nearest, saturate
                w.writeframes(np.clip(np.rint(block * 32768.0), -32768, 32767).astype("<i2").tobytes())
                if meter is not None:
                    meter.feed(block)
                left -= len(block)
        move_into_place(temp, out_wav)
    finally:
        temp.unlink(missing_ok=True)


def _silence(n: int) -> Iterator[np.ndarray]:
    while n > 0:
        block = min(n, _BLOCK_BYTES // 4)
        yield np.zeros(block, np.float32)
        n -= block


def _gained(blocks: Iterable[np.ndarray], gain_db: float) -> Iterator[np.ndarray]:
    gain = np.float32(10.0 ** (gain_db / 20.0))
    return (block * gain for block in blocks)


@dataclass(frozen=True)
class Normalisation:
    """How the joined speech is brought to the target: decided from the measurement alone."""

    # "linear" (a plain gain); "limited" (peaks did not allow a plain gain: the gain that reaches the target
    # through a true-peak limiter); "short-clip gain" (under 0.4 s, see plan_normalisation); "none" (silence)
    kind: str
    gain_db: float
    loudness_in: Loudness
    ceiling_db: float  # the limiter's ceiling ("limited" only)


def plan_normalisation(
    raw: Path,
    meter: LoudnessMeter,
    target_lufs: float = DEFAULT_TARGET_LUFS,
    true_peak: float = DEFAULT_TRUE_PEAK,
) -> Normalisation:
    """The normalisation of the raw mono 48 kHz float32 file `raw`, which `meter` measured: a plain gain to the
    target when the peaks allow one, otherwise the gain that reaches it through pipelines.media.limiter
    (predicted from 1 ms ticks: the meter's energies, and true peaks read back from `raw` only for the ticks
    the gain can push over the ceiling). Silence gets no gain."""
    from pipelines.media.limiter import limited_gain
    from pipelines.media.loudness import measure
    from pipelines.media.truepeak import TickPeaks

    measured = meter.result()
    if measured.silent:
        return Normalisation("none", 0.0, measured, true_peak)
    if measured.gated_out:
        # R128 cannot measure a clip shorter than 0.4 s. Measured looped it has the same mean-square loudness;
        # a plain gain up to the target, but never past the true-peak ceiling.
        looped = measure(np.tile(np.fromfile(raw, "<f4"), _SHORT_CLIP_LOOPS + 1))
        gain_db = min(target_lufs - looped.integrated, true_peak - measured.true_peak)
        return Normalisation(
            "short-clip gain", gain_db, replace(looped, true_peak=measured.true_peak), true_peak
        )
    gain_db = target_lufs - measured.integrated
    if measured.true_peak + gain_db <= true_peak:
        return Normalisation("linear", gain_db, measured, true_peak)
    # The limiter aims a little under the ceiling: other meters' oversampling filters read peaks a few
    # hundredths of a dB apart from ours.
    ceiling = true_peak - _PEAK_MARGIN_DB
    peaks = TickPeaks(np.memmap(raw, "<f4", mode="r"))
    return Normalisation(
        "limited", limited_gain(meter.tick_energy(), peaks, gain_db, target_lufs, ceiling), measured, ceiling
    )


def apply_normalisation(
    raw: Path, plan: Normalisation, out_wav: str | os.PathLike, n_samples: int
) -> Loudness | None:
    """Write `raw` normalised as planned into a mono 48 kHz pcm_s16le wav of exactly `n_samples`; its loudness,
    measured on the way out (None for silence, left as it is)."""
    from pipelines.media.limiter import TruePeakLimiter
    from pipelines.media.loudness import LoudnessMeter, measure

    out_wav = Path(out_wav)
    if plan.kind == "none":
        _write_wav(_raw_blocks(raw), out_wav, n_samples)
        return None
    if plan.kind == "short-clip gain":
        (gained,) = _gained([np.fromfile(raw, "<f4")], plan.gain_db)
        _write_wav([gained], out_wav, n_samples)
        return measure(np.tile(gained, _SHORT_CLIP_LOOPS + 1))
    meter = LoudnessMeter()
    if plan.kind == "limited":
        blocks = _limited(_raw_blocks(raw), TruePeakLimiter(plan.gain_db, plan.ceiling_db))
    else:
        blocks = _gained(_raw_blocks(raw), plan.gain_db)
    _write_wav(blocks, out_wav, n_samples, meter)
    return meter.result()


def _limited(blocks: Iterable[np.ndarray], limiter) -> Iterator[np.ndarray]:
    for block in blocks:
        yield limiter.process(block)
    yield limiter.flush()


@dataclass
class JoinedAudio:
    """The job's speech joined, measured and its normalisation planned; the normalised track is written by
    `write_normalised` (which a render runs in a background process while the frames render)."""

    raw: Path  # the joined audio, mono 48 kHz float32, until write_normalised removes it
    samples_16k: (
        np.ndarray
    )  # float32 mono at 16 kHz, exactly round(n_frames / fps * 16000) samples, normalised
    decoded_16k: np.ndarray  # the same before the normalisation gain: the speech as decoded (model features)
    wav_48k: Path  # where write_normalised writes the output track
    n_frames: int
    fps: float
    source_duration: float  # of the joined input before padding / trimming
    normalisation: Normalisation

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    def write_normalised(self) -> Loudness | None:
        """Write `wav_48k`, exactly n_frames / fps long; its loudness (None for silence)."""
        try:
            return apply_normalisation(
                self.raw, self.normalisation, self.wav_48k, sample_count(self.n_frames, self.fps, OUTPUT_RATE)
            )
        finally:
            self.raw.unlink(missing_ok=True)


def join_audio(
    sources: Iterable[AudioPiece],
    fps: float,
    work_dir: str | os.PathLike,
    target_lufs: float = DEFAULT_TARGET_LUFS,
    true_peak: float = DEFAULT_TRUE_PEAK,
) -> JoinedAudio:
    """Decode and join `sources`, decide n_frames, measure the loudness and plan its normalisation.

    The 16 kHz copy for the engines is decoded from the pieces at 16 kHz directly (as upstream models read their
    audio files: a 16 kHz recording is not filtered by a round trip through 48 kHz), ready before the output
    track is written. `decoded_16k` is that copy as decoded, for models whose audio features were trained on it
    (LatentSync's whisper features); `samples_16k` is it with the normalisation gain. For "limited" speech the
    latter differs from the track only around the limited peaks, which the engines' mouth analysis does not read
    (its levels are relative to the speech's own loud parts).
    """
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    sources = list(sources)  # decoded twice: at the output rate and at the features' rate
    raw = temp_path_for(work_dir / "joined.f32")
    try:
        from pipelines.media.loudness import LoudnessMeter

        meter = LoudnessMeter()  # measured as the join is written: no separate measuring pass
        total = 0
        with open(raw, "wb") as f:
            for block in iter_joined(sources, OUTPUT_RATE):
                f.write(block.astype("<f4").tobytes())
                meter.feed(block)
                total += len(block)
        if total == 0:
            raise InputError(None, "audio", "the audio is empty (no samples in any segment)")
        source_duration = total / OUTPUT_RATE
        n_frames = frame_count(source_duration, fps)
        if n_frames < 1:
            raise InputError(
                None,
                "audio",
                f"the audio lasts {source_duration:.3f} s, shorter than one frame at {fps:g} fps",
            )
        # the engines' 16 kHz copy is decoded from the pieces while the normalisation is planned
        resampling = InThread(join_segments, sources, FEATURE_RATE)
        try:
            plan = plan_normalisation(raw, meter, target_lufs, true_peak)
        except BaseException:
            resampling.abort()
            raise
        decoded_16k = pad_or_trim(resampling.result(), sample_count(n_frames, fps, FEATURE_RATE))
        samples_16k = decoded_16k * np.float32(10.0 ** (plan.gain_db / 20.0))
    except BaseException:
        raw.unlink(missing_ok=True)
        raise
    return JoinedAudio(
        raw, samples_16k, decoded_16k, work_dir / "audio_48k.wav", n_frames, fps, source_duration, plan
    )
