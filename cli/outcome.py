"""What a batch reports: one Outcome per job, the batch's result, and the Reporter interface the CLI implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.errors import EXIT_JOBS_FAILED, EXIT_OK

RENDERED, UP_TO_DATE, FAILED, INVALID, PLANNED = "rendered", "up to date", "failed", "invalid", "to render"
INTERRUPTED = "interrupted"
# Another process (another `talkreel render`, another machine) held the job when this one reached it, and finished it.
ELSEWHERE = "rendered elsewhere"


@dataclass
class Outcome:
    job: str
    status: str
    output: str | None = None
    engine: str | None = None
    error: str | None = None
    exit_code: int = EXIT_OK
    frames: int | None = None
    seconds: float | None = None
    worker: str | None = None  # host:pid of the process that rendered it
    warnings: list[str] | None = (
        None  # what the record says the user should know (a poor script alignment, ...)
    )
    traceback: str | None = None  # internal errors only; shown with -v

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None and k != "traceback"}


@dataclass
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 all done; else the shared code of the failures when nothing succeeded; else 3."""
        failures = [o for o in self.outcomes if o.exit_code != EXIT_OK]
        if not failures:
            return EXIT_OK
        succeeded = any(o.exit_code == EXIT_OK for o in self.outcomes)
        codes = {o.exit_code for o in failures}
        if not succeeded and len(codes) == 1:
            return codes.pop()
        return EXIT_JOBS_FAILED

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "jobs": [o.as_dict() for o in self.outcomes],
        }


class Reporter:
    """What the batch tells the user; the CLI gives a Rich implementation, tests may give a silent one.

    With several workers the calls of different jobs interleave; `job` tells them apart.
    """

    def batch_planned(self, n_jobs: int) -> None: ...

    def job_started(self, job: str, total_frames: int | None, worker: str | None = None) -> None: ...

    def job_progress(self, job: str, stage: str, done: int, total: int) -> None: ...

    def job_finished(self, outcome: Outcome) -> None: ...

    def waiting_for_lock(self, job: str, output: Path) -> None: ...

    def worker_event(self, message: str) -> None:
        """Something the user should know about a worker: it died, its job goes to another one."""
