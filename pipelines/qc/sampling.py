"""QC while the frames are made: a subsample of the output frames measured on a worker thread during the render.

The face mesh costs ~6 ms of CPU per frame, more than a preview frame costs to make; QC of every frame of the
finished file (decode + mesh) doubled a preview job's time. During a render, QcSampler takes the frames the
compositor hands to the encoder (no decode), keeps copies of the frames `Sampling` picks, and measures them on a
thread (MediaPipe releases the GIL), so the measuring overlaps the render. Short runs of consecutive frames are
measured (the frame-to-frame change needs neighbours), and every frame of the pauses in the speech (the
closed-mouth figure looks only there; the render knows them before the frames are made); the audio level is known for every frame, so the
audio/video offset is still resolved to one frame. The figures' precision under this subsample: docs/qc.md.

Frames the render did not pass through the compositor (a resumed render starts at its first missing segment)
are decoded from the finished file at the end; `qc_file` (every frame, `talkreel qc`) is the same with nothing
offered.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

QUEUE_FRAMES = 8  # frames waiting for the worker at most: the render waits rather than memory grow
MIN_RUNS = 30  # a short clip gets at least this many runs (every frame when it has fewer)
MAX_PERIOD = 25  # one pair a second at 25 fps


@dataclass(frozen=True)
class Sampling:
    """Measure `run` consecutive frames at the start of every `period` frames."""

    period: int = 1
    run: int = 1

    def wanted(self, index: int) -> bool:
        return index % self.period < self.run

    def describe(self) -> str:
        return "every frame" if self.run >= self.period else f"{self.run} of every {self.period} frames"


FULL = Sampling(1, 1)


def render_sampling(n_frames: int) -> Sampling:
    """A render's subsample: pairs of frames, at least MIN_RUNS of them, at most one pair in MAX_PERIOD frames."""
    period = min(MAX_PERIOD, n_frames // MIN_RUNS)
    return FULL if period <= 2 else Sampling(period, 2)


def pause_hint(
    samples: np.ndarray, sample_rate: int, fps: float, n_frames: int, offset: int = 0
) -> frozenset[int]:
    """The frames the closed-mouth figure will look at, from the speech before it is rendered: the pause frames
    (pipelines.qc.figures.pause_frames) of `samples`, shifted by `offset` (where the clip starts in the output)."""
    from pipelines.qc.figures import pause_frames
    from pipelines.speech.levels import silent_frames, speech_levels_db

    levels = speech_levels_db(samples, sample_rate, fps, n_frames)
    return frozenset((np.flatnonzero(pause_frames(silent_frames(levels), fps)) + offset).tolist())


class QcSampler:
    """offer() every output frame in order; finish() gives the QC figures (and writes a contact sheet)."""

    def __init__(
        self,
        n_frames: int,
        fps: float,
        sampling: Sampling,
        also: frozenset[int] = frozenset(),
        sheet_frames: int = 16,
        tile_width: int = 256,
        clip: tuple[int, int] | None = None,
        face: Any = None,
    ):
        """`also`: frames measured besides the sampling's (the pauses, see pause_hint); `clip`: (first frame,
        frame count) of the talking clip between the cards, the only frames that should show a face; `face`: the
        person measured when the frames show several (pipelines.qc.measure.FrameMeter)."""
        self.clip, self.face = clip, face
        from pipelines.qc.contact_sheet import sheet_indices

        self.n_frames, self.fps, self.sampling, self.also = n_frames, fps, sampling, also
        self.tile_width = tile_width
        self.sheet_wanted = set(sheet_indices(n_frames, sheet_frames))
        self.sheet: dict[int, np.ndarray] = {}
        self.values: dict[int, tuple[float, float]] = {}  # frame -> (mouth opening, face sharpness)
        self.offered: set[int] = set()
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.busy = (
            0.0  # seconds spent measuring frames (on the worker, overlapping the render, and in finish)
        )

    def offer(self, index: int, frame: np.ndarray) -> None:
        """One output frame (RGB uint8): copied when it is wanted (the caller may reuse its buffer)."""
        self.offered.add(index)
        if index in self.sheet_wanted:
            self.sheet[index] = self._tile(frame)
        if self._wanted(index) and self._error is None:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="qc", daemon=True)
                self._thread.start()
            self._queue.put((index, np.array(frame, copy=True)))

    def _wanted(self, index: int) -> bool:
        return self.sampling.wanted(index) or index in self.also

    def _tile(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        h, w = frame.shape[:2]
        size = (self.tile_width, max(1, round(h * self.tile_width / w)))
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    def _work(self) -> None:
        from pipelines.qc.measure import FrameMeter

        try:
            with FrameMeter(self.face) as meter:
                while (item := self._queue.get()) is not None:
                    index, frame = item
                    t0 = time.perf_counter()
                    self.values[index] = meter.measure(frame)
                    self.busy += time.perf_counter() - t0
        except BaseException as exc:  # raised by finish()
            self._error = exc
            while self._queue.get() is not None:  # let offer() go on; finish() reports the error
                pass

    def close(self) -> None:
        """Stop the worker (after the frames already queued)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def __enter__(self) -> QcSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def finish(self, path: str | os.PathLike, sheet: str | os.PathLike | None = None) -> dict:
        """The QC figures of the finished file at `path`: frames never offered are decoded from it, and its audio
        is measured. `sheet`: write the contact sheet there."""
        from pipelines.qc.figures import qc_figures
        from pipelines.qc.measure import audio_figures

        self.close()
        if self._error is not None:
            raise self._error
        path = Path(path)
        self._decode_missing(path)
        n = self.n_frames
        measured = np.zeros(n, bool)
        openings, sharpness = np.full(n, math.nan), np.full(n, math.nan)
        for index, (opening, sharp) in self.values.items():
            if index < n:
                measured[index], openings[index], sharpness[index] = True, opening, sharp
        sample = np.array([self.sampling.wanted(i) for i in range(n)], bool)
        audio, levels = audio_figures(path, self.fps, n)
        result: dict[str, Any] = {
            "fps": self.fps,
            "video_duration": round(n / self.fps, 4),
            **audio,
            "sampling": self.sampling.describe(),
            **({"face": self.face.model_dump(exclude_none=True)} if self.face is not None else {}),
            **qc_figures(openings, levels, self.fps, measured, sharpness, sample, self.clip),
        }
        if sheet is not None:
            from pipelines.qc.contact_sheet import save_contact_sheet, sheet_label

            kept = sorted(self.sheet)
            result["contact_sheet"] = str(
                save_contact_sheet(
                    [self.sheet[i] for i in kept], [sheet_label(i, self.fps) for i in kept], sheet
                )
            )
        self.tracks = _tracks(measured & sample, openings, sharpness, levels, self.fps)
        return result

    def _decode_missing(self, path: Path) -> None:
        """Measure the wanted frames (and keep the sheet's) that were never offered, decoding the file up to the
        last of them; the frame count becomes the file's when nothing was offered."""
        import av

        from pipelines.errors import InputError
        from pipelines.qc.measure import FrameMeter

        everything = not self.offered
        missing = [
            i
            for i in range(self.n_frames)
            if i not in self.offered and (self._wanted(i) or i in self.sheet_wanted)
        ]
        if not missing and not everything:
            return
        last = math.inf if everything else missing[-1]
        seen = 0
        with av.open(os.fspath(path)) as container, FrameMeter(self.face) as meter:
            if not container.streams.video:
                raise InputError(path, None, "has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                seen = index + 1
                if index > last:
                    break
                if index in self.offered:
                    continue
                wanted, in_sheet = self._wanted(index), index in self.sheet_wanted
                if wanted or in_sheet:
                    image = frame.to_ndarray(format="rgb24")
                    if wanted:
                        t0 = time.perf_counter()
                        self.values[index] = meter.measure(image)
                        self.busy += time.perf_counter() - t0
                    if in_sheet:
                        self.sheet[index] = self._tile(image)
        if everything and seen:
            self.n_frames = seen
            self.sheet = {i: t for i, t in self.sheet.items() if i < seen}


def _tracks(measured, openings, sharpness, levels, fps: float) -> dict[str, list]:
    """The tracks the review page plots: the measured frames' times, openings and sharpness, and the audio level
    at every frame (rounded: they go into the job record)."""
    idx = np.flatnonzero(measured)

    def rounded(values: np.ndarray, digits: int) -> list:
        return [None if math.isnan(v) else round(float(v), digits) for v in values]

    return {
        "fps": fps,
        "measured_frames": idx.tolist(),
        "mouth_opening": rounded(openings[idx], 4),
        "face_sharpness": rounded(sharpness[idx], 1),
        "level_db": rounded(np.maximum(levels, -120.0), 1),
    }
