"""A reporter that kills the worker rendering a job mid-job: a real SIGKILL of a worker process or Ray actor."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from cli.batch import Reporter


class KillOnce(Reporter):
    """SIGKILLs the worker rendering `job` once it has made `after` frames (workers name themselves host:pid)."""

    def __init__(self, job: str, after: int = 30):
        self.job, self.after = job, after
        self.pid: int | None = None
        self.killed = False
        self.started: list[tuple[str, str | None]] = []
        self.events: list[str] = []

    def job_started(self, job, total_frames, worker=None):
        self.started.append((Path(job).stem, worker))
        if Path(job).stem == self.job and not self.killed:
            self.pid = int(worker.rsplit(":", 1)[1])

    def job_progress(self, job, stage, done, total):
        if (
            Path(job).stem == self.job
            and self.pid
            and not self.killed
            and stage == "render"
            and done >= self.after
        ):
            os.kill(self.pid, signal.SIGKILL)
            self.killed = True

    def worker_event(self, message):
        self.events.append(message)


def child_pids() -> set[int]:
    """The live or unreaped child processes of this process (Linux /proc; empty elsewhere)."""
    pids: set[int] = set()
    for children in Path("/proc/self/task").glob("*/children"):
        pids.update(int(p) for p in children.read_text().split())
    return pids
