"""Batch orchestration: validate everything, plan, then render job by job with isolation and locks.

A job that fails is reported and the others go on. Engines are created once per batch and reused across jobs
(models load once). Two processes on the same jobs take a per-output lock: the second waits, then finds
the output up to date and skips it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.errors import EXIT_INPUT, EXIT_JOBS_FAILED, EXIT_OK, environment_message
from pipelines.errors import InputError, TalkreelError

RENDERED, UP_TO_DATE, FAILED, INVALID, PLANNED = "rendered", "up to date", "failed", "invalid", "to render"
INTERRUPTED = "interrupted"


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
    traceback: str | None = None  # internal errors only; shown with -v
    warnings: list[str] | None = (
        None  # what the record says the user should know (a poor script alignment, ...)
    )

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
    """What the batch tells the user; the CLI gives a Rich implementation, tests may give a silent one."""

    def batch_planned(self, n_jobs: int) -> None: ...

    def job_started(self, job: str, total_frames: int | None) -> None: ...

    def job_progress(self, job: str, stage: str, done: int, total: int) -> None: ...

    def job_finished(self, outcome: Outcome) -> None: ...

    def waiting_for_lock(self, job: str, output: Path) -> None: ...


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'K/N' (1 <= K <= N) -> (K, N)."""
    if text is None:
        return None
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(None, "--shard", f"expected K/N such as 1/4, got {text!r}") from None
    if not 1 <= k <= n:
        raise InputError(None, "--shard", f"expected 1 <= K <= N, got {text!r}")
    return k, n


def _engine_override(name: str | None):
    if name is None:
        return None
    from pipelines.spec.engines import engine_settings

    try:
        return engine_settings(name)
    except ValueError:  # pydantic's ValidationError
        from pipelines.engines.base import engine_names

        raise InputError(
            None, "--engine", f"unknown engine {name!r}; known: {', '.join(engine_names())}"
        ) from None


def run_batch(
    paths: Sequence[Path],
    out_dir: Path,
    *,
    engine: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    shard: str | None = None,
    allow_outside_paths: bool = False,
    qc: bool = True,
    low_vram: bool = False,
    reporter: Reporter | None = None,
) -> BatchResult:
    from pipelines.cache import DiskArrayCache, FileHasher, default_cache_root
    from pipelines.render import estimate_frames, plan_job
    from pipelines.spec.loader import load_batch

    reporter = reporter or Reporter()
    override = _engine_override(engine)
    shard_kn = parse_shard(shard)
    out_dir = Path(out_dir)
    result = BatchResult()

    def invalid(error: InputError) -> None:
        outcome = Outcome(job=error.file or "?", status=INVALID, error=str(error), exit_code=EXIT_INPUT)
        result.outcomes.append(outcome)
        reporter.job_finished(outcome)

    batch = load_batch(list(paths), allow_outside_paths=allow_outside_paths)
    for error in batch.errors:
        invalid(error)

    jobs = sorted(batch.jobs, key=lambda j: str(j.job_path))
    if shard_kn:
        k, n = shard_kn
        jobs = [j for i, j in enumerate(jobs) if i % n == k - 1]
    if override is not None:
        for loaded in jobs:
            loaded.job.engine = override
    if low_vram:  # a setting of the LatentSync engines: it reaches the plan's hash and the job record
        for loaded in jobs:
            if "low_vram" in type(loaded.job.engine).model_fields:
                loaded.job.engine = loaded.job.engine.model_copy(update={"low_vram": True})

    hasher = FileHasher(out_dir / ".talkreel" / "file-hashes.json")
    plans = []
    for loaded in jobs:
        try:
            plans.append(plan_job(loaded, out_dir, hasher, force=force))
        except OSError as exc:  # an input file vanished or became unreadable since loading
            invalid(InputError(loaded.job_path, None, str(exc)))
        except InputError as exc:  # e.g. the output's folder is blocked by a file
            invalid(exc)

    plans = _check_media_and_faces(plans, batch, invalid)

    if dry_run:
        for plan in plans:
            result.outcomes.append(
                Outcome(
                    job=str(plan.loaded.job_path),
                    status=UP_TO_DATE if plan.up_to_date else PLANNED,
                    output=str(plan.out_path),
                    engine=plan.engine_name,
                    frames=None if plan.up_to_date else estimate_frames(plan.loaded),
                )
            )
        return result

    cache = DiskArrayCache(default_cache_root() / "prepared")
    engines: dict[str, Any] = {}
    reporter.batch_planned(len(plans))
    for plan in plans:
        result.outcomes.append(_run_one(plan, out_dir, force, qc, engines, cache, hasher, reporter))
    return result


def _check_media_and_faces(plans: list, batch: Any, invalid: Callable[[InputError], None]) -> list:
    """`validate`'s face and audio checks, for the jobs that will render (an up-to-date skip stays instant)."""
    from cli.validate import check_batch_faces, check_batch_media
    from pipelines.spec.loader import Batch

    pending = [p.loaded for p in plans if not p.up_to_date]
    if not pending:
        return plans
    persona_files = {loaded.persona_file for loaded in pending}
    sub = Batch(jobs=list(pending), personas=[p for p in batch.personas if p.path in persona_files])
    check_batch_faces(sub)
    check_batch_media(sub)
    for error in sub.errors:
        invalid(error)
    kept = {id(loaded) for loaded in sub.jobs}
    return [p for p in plans if p.up_to_date or id(p.loaded) in kept]


def _run_one(
    plan, out_dir: Path, force: bool, qc: bool, engines: dict[str, Any], cache, hasher, reporter: Reporter
) -> Outcome:
    from pipelines.engines.base import create_engine
    from pipelines.locks import OutputLock
    from pipelines.render import plan_job, render_job

    job = str(plan.loaded.job_path)
    outcome = Outcome(job=job, status=UP_TO_DATE, output=str(plan.out_path), engine=plan.engine_name)
    if plan.up_to_date:
        reporter.job_finished(outcome)
        return outcome

    lock = OutputLock(plan.out_path)
    if not lock.acquire(wait=False):
        reporter.waiting_for_lock(job, plan.out_path)
        lock.acquire(wait=True)
        # The process we waited for has probably just rendered this very output.
        plan = plan_job(plan.loaded, out_dir, hasher, force=force)
    t0 = time.perf_counter()
    try:
        if plan.up_to_date:
            return outcome
        if plan.engine_name not in engines:
            engines[plan.engine_name] = create_engine(plan.engine_name)  # once per batch: models load once
        reporter.job_started(job, None)
        record = render_job(
            plan,
            engines[plan.engine_name],
            cache,
            progress=lambda s, d, t: reporter.job_progress(job, s, d, t),
            qc=qc,
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
        raise
    finally:
        lock.release()
        outcome.seconds = round(time.perf_counter() - t0, 3)
        reporter.job_finished(outcome)
    return outcome
