"""Render at the model's frame rate, deliver at the job's.

Models trained at a fixed rate (LatentSync, MuseTalk, EchoMimic: 25 fps) see audio windows and motion per model
frame; fed another rate, the mouth runs early or late against the speech. An engine renders on the model's grid
and each output frame shows the model frame at the middle of its own display interval (nearest in time: frames
repeat when the job's rate is higher, are skipped when it is lower). At the model's rate it is the identity.

    timeline = Timeline(n_frames, job_fps, MODEL_FPS)
    rows = timeline.output_rows()                  # per model frame: the output frame whose expression row it uses
    start_model = timeline.model_of(start)         # a resume starts at the model frame output `start` shows
    for j, frame in model_frames(...):             # model frames j in order, from start_model
        for _ in timeline.copies(j, start):        # the output frames >= start that show model frame j
            yield frame

The source video is read at the model rate, the audio windows are taken at the model rate.
"""

from __future__ import annotations

import math


class Timeline:
    """`n` output frames at `fps` mapped onto the model's frames at `model_fps`."""

    def __init__(self, n: int, fps: float, model_fps: float):
        if not (fps > 0 and model_fps > 0):
            raise ValueError(f"frame rates must be positive, got {fps} and {model_fps}")
        self.n = int(n)
        self.fps = float(fps)
        self.model_fps = float(model_fps)
        self.n_model = self.model_of(self.n - 1) + 1 if self.n > 0 else 0

    @property
    def identity(self) -> bool:
        return self.fps == self.model_fps

    def model_of(self, i: int) -> int:
        """The model frame output frame i shows (the one at the middle of its interval)."""
        if self.identity:
            return int(i)
        return int(math.floor((i + 0.5) * self.model_fps / self.fps))

    def output_rows(self) -> list[int]:
        """Per model frame, the output frame nearest to it in time (for per-output-frame inputs: expression)."""
        if self.identity:
            return list(range(self.n_model))
        return [
            min(int(math.floor((j + 0.5) * self.fps / self.model_fps)), self.n - 1)
            for j in range(self.n_model)
        ]

    def copies(self, j: int, start: int = 0) -> range:
        """The output frames i >= start that show model frame j (empty when the job's rate skips it)."""
        if self.identity:
            return range(j, j + 1) if j >= start else range(0)
        # model_of is non-decreasing: the outputs of j are a run; its first is the smallest i with model_of(i) >= j
        first = max(start, math.ceil(j * self.fps / self.model_fps - 0.5))
        while first > 0 and first - 1 >= start and self.model_of(first - 1) >= j:
            first -= 1
        while first < self.n and self.model_of(first) < j:
            first += 1
        last = first
        while last < self.n and self.model_of(last) == j:
            last += 1
        return range(first, last)
