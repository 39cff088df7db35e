"""One worker: renders planned jobs one at a time, keeping its engines (models) and prepared personas across jobs.

The same class serves every executor: the local process, `--workers N` worker processes and Ray actors. A job is
claimed through its output's lock (pipelines.locks), which dies with its holder: a job another live process holds
is handed back (`None`) so the caller takes the next one, and when its holder dies the next taker resumes its
segments (render_job starts at the first missing one).
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

from cli.errors import EXIT_JOBS_FAILED, environment_message
from cli.outcome import ELSEWHERE, FAILED, INTERRUPTED, RENDERED, UP_TO_DATE, Outcome
from pipelines.errors import TalkreelError

Event = Callable[..., None]
"""emit(kind, job, *details): "started" (job, worker), "progress" (job, stage, done, total), "waiting" (job, output)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(self, force: bool = False, qc: bool = True, started: float | None = None):
        from pipelines.cache import DiskArrayCache, FileHasher, default_cache_root

        self.force = force
        self.qc = qc
        # With --force an output existing before the batch began is stale; one newer than this was made meanwhile.
        self.started = time.time() if started is None else started
        self.cache = DiskArrayCache(default_cache_root() / "prepared")
        self.hasher = FileHasher()
        self.engines: dict[str, Any] = {}
        self.name = worker_name()

    def render(self, plan: Any, wait: bool, emit: Event) -> Outcome | None:
        """Render `plan` (or find it done); None when another live process holds it and `wait` is False."""
        from pipelines.engines.base import create_engine
        from pipelines.locks import OutputLock
        from pipelines.render import render_job

        job = str(plan.loaded.job_path)
        outcome = Outcome(job=job, status=UP_TO_DATE, output=str(plan.out_path), engine=plan.engine_name)
        if plan.up_to_date:
            return outcome
        lock = OutputLock(plan.out_path)
        if not lock.acquire(wait=False):
            if not wait:
                return None
            emit("waiting", job, str(plan.out_path))
            lock.acquire(wait=True)
        t0 = time.perf_counter()
        try:
            if self._done_meanwhile(plan):
                outcome.status = ELSEWHERE
                return outcome
            if plan.engine_name not in self.engines:
                self.engines[plan.engine_name] = create_engine(
                    plan.engine_name
                )  # models load once per worker
            emit("started", job, self.name)
            outcome.worker = self.name
            record = render_job(
                plan,
                self.engines[plan.engine_name],
                self.cache,
                progress=_Throttled(lambda s, d, t: emit("progress", job, s, d, t)),
                qc=self.qc,
            )
            outcome.status = RENDERED
            outcome.frames = record["frames"]["output"]
            outcome.warnings = record.get("warnings") or None
        except TalkreelError as exc:
            outcome.status, outcome.error, outcome.exit_code = FAILED, str(exc), exc.exit_code
        except Exception as exc:  # one job's internal error must not stop the batch
            outcome.status, outcome.exit_code = FAILED, EXIT_JOBS_FAILED
            environment = environment_message(exc)
            if environment:
                outcome.error = f"{job}: {environment}"
            else:
                outcome.error = f"{job}: internal error: {type(exc).__name__}: {exc}"
                outcome.traceback = traceback.format_exc()
        except KeyboardInterrupt:
            outcome.status, outcome.exit_code = INTERRUPTED, EXIT_JOBS_FAILED
            emit("interrupted", outcome)
            raise
        finally:
            lock.release()
            outcome.seconds = round(time.perf_counter() - t0, 3)
        return outcome

    def _done_meanwhile(self, plan: Any) -> bool:
        """Another process rendered this very job (same content hash) after it was planned."""
        from pipelines.publish import matches_record, read_record

        if not plan.out_path.is_file():
            return False
        record = read_record(plan.out_path)
        if record.get("content_hash") != plan.content_hash:
            return False
        if self.force and plan.record_path.stat().st_mtime < self.started:
            return False
        return matches_record(plan.out_path, record, self.hasher)


class _Throttled:
    """Progress callbacks at most every 0.2 s (and always at a stage's start and end): workers in other processes
    or on other machines send each one over a queue."""

    def __init__(self, report: Callable[[str, int, int], None], every: float = 0.2):
        self.report, self.every = report, every
        self.last, self.stage = 0.0, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self.stage or done >= total or now - self.last >= self.every:
            self.stage, self.last = stage, now
            self.report(stage, done, total)
