"""`talkreel render --executor ray [--address ADDR]`: the batch's jobs on Ray actors, across machines.

One long-lived actor per GPU of the cluster (or per CPU for preview-only batches, or `--workers N` of them), each
a cli.worker.Worker: models resident, jobs of the personas it prepared sent back to it (cli.schedule). Ray
restarts an actor that dies and re-runs its job on it; the output's lock died with the old process, and the job
resumes from its last segment where the output folder is shared by the nodes. Progress comes back to the driver
through a Ray queue; outputs and records are written by the actors exactly as a local run writes them, so the
output folder must be one every node sees (a shared filesystem).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cli.errors import EXIT_JOBS_FAILED
from cli.outcome import FAILED, Outcome
from cli.schedule import AffinityQueue, Item
from cli.worker import Event
from pipelines.errors import InputError

MAX_RESTARTS = 2  # per actor: Ray starts it again after it dies, and re-runs the job it was on
POLL = 0.2


class RayWorker:
    """The actor: a Worker whose events go to the driver's queue."""

    def __init__(self, force: bool, qc: bool, started: float, events: Any):
        from cli.worker import Worker

        self.worker = Worker(force=force, qc=qc, started=started)
        self.events = events

    def name(self) -> str:
        return self.worker.name

    def render(self, plan: Any, wait: bool) -> Outcome | None:
        return self.worker.render(plan, wait, lambda *event: self.events.put(event))


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(
            None,
            "--executor",
            "ray is not installed; install the optional extra: pip install 'talkreel[ray]'",
        ) from None
    return ray


def run_on_ray(
    pending: Sequence[tuple[int, Any]],
    n_workers: int | None,
    address: str | None,
    *,
    force: bool,
    qc: bool,
    started: float,
    emit: Event,
    finish: Callable[[int, Outcome], None],
    tell: Callable[[str], None],
) -> None:
    """Render the pending (index, plan) jobs on Ray actors; finish(index, outcome) for each."""
    ray = import_ray()
    from ray.exceptions import RayActorError, RayTaskError
    from ray.util.queue import Empty, Queue

    if not ray.is_initialized():
        # address None: RAY_ADDRESS, else a running local cluster, else a new one on this machine
        ray.init(address=address, log_to_driver=False, logging_level="warning")
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    use_gpu = gpus > 0 and any(plan.engine_name != "preview" for _, plan in pending)
    n = n_workers or (gpus if use_gpu else int(resources.get("CPU", 1)))
    n = max(1, min(n, len(pending)))
    options = {"num_gpus": 1, "num_cpus": 0} if use_gpu else {"num_cpus": 1}
    actor_class = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS, **options)(RayWorker)
    events = Queue(actor_options={"num_cpus": 0})
    actors = [actor_class.remote(force, qc, started, events) for _ in range(n)]
    jobs = AffinityQueue.of(pending)
    running: dict[Any, tuple[int, Item]] = {}  # object ref -> (actor, item)
    busy: set[int] = set()
    try:
        while len(jobs) or running:
            for a, actor in enumerate(actors):
                if a not in busy and (item := jobs.take(a)) is not None:
                    running[actor.render.remote(item.plan, item.wait)] = (a, item)
                    busy.add(a)
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL)
            _drain(events, emit, Empty)
            for ref in done:
                a, item = running.pop(ref)
                busy.discard(a)
                try:
                    outcome = ray.get(ref)
                except (RayActorError, RayTaskError) as exc:
                    job = str(item.plan.loaded.job_path)
                    if isinstance(exc, RayActorError):
                        error = f"{job}: its Ray worker died {MAX_RESTARTS + 1} times"
                    else:
                        error = f"{job}: internal error on a Ray worker: {str(exc).splitlines()[0]}"
                    outcome = Outcome(
                        job, FAILED, str(item.plan.out_path), item.plan.engine_name, error, EXIT_JOBS_FAILED
                    )
                    tell(error)
                if outcome is None:  # another process holds it: later, waiting for that holder
                    jobs.hold(item)
                else:
                    finish(item.index, outcome)
        _drain(events, emit, Empty)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        ray.kill(events.actor, no_restart=True)


def _drain(events: Any, emit: Event, empty: type) -> None:
    try:
        batch = events.get_nowait_batch(events.qsize())
    except empty:
        return
    for event in batch:
        emit(*event)
