"""Batch orchestration: validate everything, plan, then render the jobs with isolation and per-output claims.

A job that fails is reported and the others go on. The planned jobs are rendered by workers (cli.worker) that keep
their engines (models) across jobs: this process, `--workers N` local processes (cli.pool) or Ray actors
(cli.ray_executor). Several `talkreel render` processes on the same jobs split them: each output is claimed by a
lock that dies with its holder; a job another live process holds is left for last, then found done (reported as
"rendered elsewhere") or, if its holder died, resumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cli.errors import EXIT_INPUT
from cli.outcome import (  # noqa: F401  (the batch's vocabulary, imported from here by the CLI and tests)
    ELSEWHERE,
    FAILED,
    INTERRUPTED,
    INVALID,
    PLANNED,
    RENDERED,
    UP_TO_DATE,
    BatchResult,
    Outcome,
    Reporter,
)
from pipelines.errors import InputError

EXECUTORS = ("local", "ray")
SHARD_KEYS = ("job", "persona")


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
    shard_by: str = "job",
    workers: int | None = None,
    devices: str | None = None,
    executor: str = "local",
    address: str | None = None,
) -> BatchResult:
    from pipelines.cache import FileHasher
    from pipelines.render import estimate_frames, plan_job
    from pipelines.spec.loader import load_batch

    reporter = reporter or Reporter()
    override = _engine_override(engine)
    shard_kn = parse_shard(shard)
    device_list = parse_devices(devices)
    _check_executor(executor, shard_by, workers, devices, address)
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
        jobs = shard_jobs(jobs, *shard_kn, by=shard_by)
    if override is not None:
        for loaded in jobs:
            loaded.job.engine = override
    if (
        low_vram
    ):  # a setting of the LatentSync and EchoMimic V3 engines: it reaches the plan's hash and the record
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

    reporter.batch_planned(len(plans))
    execute(plans, reporter, result, force, qc, workers, device_list, executor, address)
    return result


def execute(
    plans: list,
    reporter: Reporter,
    result: BatchResult,
    force: bool,
    qc: bool,
    workers: int | None,
    devices: list[str] | None,
    executor: str,
    address: str | None,
) -> None:
    """Render the planned jobs on the chosen executor; result.outcomes gets one outcome per plan, in plan order."""
    from cli.worker import Worker

    started = time.time()
    outcomes: list[Outcome | None] = [None] * len(plans)

    def finish(index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome
        reporter.job_finished(outcome)

    def emit(kind: str, job: str, *details: Any) -> None:
        if kind == "started":
            reporter.job_started(job, None, *details)
        elif kind == "progress":
            reporter.job_progress(job, *details)
        elif kind == "waiting":
            reporter.waiting_for_lock(job, Path(details[0]))

    pending = []
    for index, plan in enumerate(plans):
        if plan.up_to_date:
            finish(
                index, Outcome(str(plan.loaded.job_path), UP_TO_DATE, str(plan.out_path), plan.engine_name)
            )
        else:
            pending.append((index, plan))
    if devices and not workers:
        workers = len(devices)
    common = dict(force=force, qc=qc, started=started, emit=emit, finish=finish, tell=reporter.worker_event)
    try:
        if not pending:
            pass
        elif executor == "ray":
            from cli.ray_executor import run_on_ray

            run_on_ray(pending, workers, address, **common)
        elif devices or (workers and workers > 1 and len(pending) > 1):  # --devices: each worker its GPU
            from cli.pool import run_in_processes

            run_in_processes(pending, workers, devices or _gpus_for(pending), **common)
        else:
            _run_here(pending, Worker(force=force, qc=qc, started=started), emit, finish)
    finally:
        result.outcomes.extend(o for o in outcomes if o is not None)


def _run_here(pending: list, worker: Any, emit: Callable[..., None], finish: Callable) -> None:
    """This process renders the jobs; the ones another process holds come last, waiting for their holder."""

    def interrupted(kind: str, *details: Any) -> None:
        if kind == "interrupted":  # Ctrl-C mid-job: reported as such, never as done
            finish(index, details[0])
        else:
            emit(kind, *details)

    held = []
    for index, plan in pending:
        outcome = worker.render(plan, False, interrupted)
        if outcome is None:
            held.append((index, plan))
        else:
            finish(index, outcome)
    for index, plan in held:
        finish(index, worker.render(plan, True, interrupted))


def parse_devices(text: str | None) -> list[str] | None:
    """'0,1,3' -> ['0', '1', '3'] (CUDA device numbers, one worker each)."""
    if text is None:
        return None
    devices = [part.strip() for part in text.split(",")]
    if not all(d.isdigit() for d in devices):
        raise InputError(None, "--devices", f"expected CUDA device numbers such as 0,1, got {text!r}")
    return devices


def _check_executor(
    executor: str, shard_by: str, workers: int | None, devices: str | None, address: str | None
) -> None:
    if executor not in EXECUTORS:
        raise InputError(None, "--executor", f"expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if shard_by not in SHARD_KEYS:
        raise InputError(None, "--shard-by", f"expected one of {', '.join(SHARD_KEYS)}, got {shard_by!r}")
    if workers is not None and workers < 1:
        raise InputError(None, "--workers", f"expected a number of workers >= 1, got {workers}")
    if devices is not None and executor == "ray":
        raise InputError(
            None, "--devices", "Ray gives each actor its GPU; use --workers N for the number of actors"
        )
    if address is not None and executor != "ray":
        raise InputError(None, "--address", "a Ray cluster's address; give it with --executor ray")


def shard_jobs(jobs: list, k: int, n: int, by: str = "job") -> list:
    """The K-th of N shares: round-robin over the sorted jobs, or over the sorted personas (by="persona": every
    job of a persona in one share, so each persona is prepared on one machine only)."""
    if by == "persona":
        personas = sorted({str(j.persona_file) for j in jobs})
        mine = {p for i, p in enumerate(personas) if i % n == k - 1}
        return [j for j in jobs if str(j.persona_file) in mine]
    return [j for i, j in enumerate(jobs) if i % n == k - 1]


def _gpus_for(pending: list) -> list[str] | None:
    """One GPU per worker when model engines render and CUDA devices exist; None: CPU workers (preview)."""
    if all(plan.engine_name == "preview" for _, plan in pending):
        return None
    import torch

    count = torch.cuda.device_count()
    return [str(d) for d in range(count)] or None


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
