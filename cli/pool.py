"""`talkreel render --workers N`: N worker processes on this machine, one per GPU (or N CPU workers).

Each worker is a fresh (spawned) process running cli.worker.Worker, so its engines load their models once and keep
them across its jobs; CUDA_VISIBLE_DEVICES gives it its own GPU. The driver plans, hands out jobs with persona
affinity (cli.schedule), turns the workers' events into the one progress display, and collects the outcomes. A
worker that dies (killed, out of memory) is replaced and its job given again: the output's lock died with it, and
the next taker resumes its segments.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from typing import Any

from cli.errors import EXIT_JOBS_FAILED
from cli.outcome import FAILED, Outcome
from cli.schedule import AffinityQueue, Item
from cli.worker import Event

MAX_TRIES = 3  # workers that may die on one job before it is reported failed
POLL = 0.2  # seconds between looks at the workers when no message comes


def _worker_main(slot: int, conn: Any, force: bool, qc: bool, started: float) -> None:
    from cli.worker import Worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops the workers
    worker = Worker(force=force, qc=qc, started=started)
    conn.send(("ready", worker.name))
    while (task := conn.recv()) is not None:
        index, plan, wait = task
        outcome = worker.render(plan, wait, lambda *event: conn.send(("event", *event)))
        conn.send(("done", index, outcome))


class _Slot:
    """One worker process and its own pipe (a shared queue's lock, held by a worker killed mid-send, would stop
    every other worker)."""

    def __init__(self, ctx: Any, slot: int, device: str | None, args: tuple):
        self.slot, self.device = slot, device
        self.conn, child_conn = ctx.Pipe()
        self.item: Item | None = None
        self.ready = False
        self.name = f"worker {slot + 1}"
        env = os.environ.copy()
        if device is not None:  # read by the child at start-up, before it imports torch
            os.environ["CUDA_VISIBLE_DEVICES"] = device
        try:
            self.process = ctx.Process(
                target=_worker_main, args=(slot, child_conn, *args), name=f"talkreel-{self.name}"
            )
            self.process.start()
        finally:
            os.environ.clear()
            os.environ.update(env)
        child_conn.close()  # the child's end lives in the child only: its death closes the pipe

    def give(self, item: Item) -> None:
        self.item = item
        try:
            self.conn.send((item.index, item.plan, item.wait))
        except OSError:  # it has just died: its pipe's end is read next, and the item goes to its successor
            pass


def run_in_processes(
    pending: Sequence[tuple[int, Any]],
    n_workers: int,
    devices: Sequence[str] | None,
    *,
    force: bool,
    qc: bool,
    started: float,
    emit: Event,
    finish: Callable[[int, Outcome], None],
    tell: Callable[[str], None],
) -> None:
    """Render the pending (index, plan) jobs on n_workers processes; finish(index, outcome) for each."""
    # Spawned, never forked: the driver has run MediaPipe (the face checks) and may hold CUDA or threads; a
    # forked preview worker segfaulted in its first job. The price: each worker's imports (seconds).
    ctx = mp.get_context("spawn")
    jobs = AffinityQueue.of(pending)
    n_workers = max(1, min(n_workers, len(pending)))
    args = (force, qc, started)

    def start(slot: int) -> _Slot:
        device = devices[slot % len(devices)] if devices else None
        return _Slot(ctx, slot, device, args)

    tracker_was_running = _resource_tracker_running()
    slots = [start(k) for k in range(n_workers)]
    try:
        while len(jobs) or any(s.item for s in slots):
            for slot in slots:
                if slot.item is None and (item := jobs.take(slot.slot)) is not None:
                    slot.give(item)
            by_conn = {slot.conn: slot for slot in slots}
            for conn in wait(list(by_conn), timeout=POLL):
                slot = by_conn[conn]
                try:
                    message = conn.recv()
                except (EOFError, OSError):  # the worker died: its pipe closed
                    slots[slot.slot] = _replace(slot, start, jobs, finish, tell)
                    continue
                kind, *rest = message
                if kind == "event":
                    emit(*rest)
                elif kind == "ready":
                    slot.name, slot.ready = rest[0], True
                elif kind == "done":
                    index, outcome = rest
                    item, slot.item = slot.item, None
                    if outcome is None:  # another process holds it: later, waiting for that holder
                        jobs.hold(item)
                    else:
                        finish(index, outcome)
    finally:
        _stop(slots)
        if not tracker_was_running:
            _stop_resource_tracker()


def _resource_tracker_running() -> bool:
    from multiprocessing import resource_tracker

    return getattr(resource_tracker._resource_tracker, "_fd", None) is not None


def _stop_resource_tracker() -> None:
    """Stop the resource tracker the first spawned worker started: a child process of ours that would otherwise
    outlive the batch for the life of this process (a Python caller's, a test session's), which then finds a child
    it never started. Its work (unlinking a dead worker's semaphores) ended with the last worker."""
    from multiprocessing import resource_tracker

    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        stop()


def _replace(slot: _Slot, start: Callable[[int], _Slot], jobs: AffinityQueue, finish, tell) -> _Slot:
    """A dead worker: its job goes to another worker (resuming its segments), or fails after MAX_TRIES deaths."""
    slot.process.join(timeout=10)  # its pipe closed as it died: reap it for its exit status
    if slot.process.is_alive():
        slot.process.terminate()
        slot.process.join()
    code = slot.process.exitcode
    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    if not slot.ready:  # it never came up: starting more would fail the same way
        raise RuntimeError(f"a talkreel worker process failed to start ({how})")
    item, slot.item = slot.item, None
    if item is not None:
        item.tries += 1
        job = str(item.plan.loaded.job_path)
        if item.tries < MAX_TRIES:
            tell(f"{slot.name} died ({how}) while rendering {job}; another worker resumes it")
            jobs.put_back(item)
        else:
            error = f"{job}: the worker rendering it died {item.tries} times (last: {how})"
            failed = Outcome(
                job, FAILED, str(item.plan.out_path), item.plan.engine_name, error, EXIT_JOBS_FAILED
            )
            finish(item.index, failed)
            tell(error)
    else:
        tell(f"{slot.name} died ({how}); starting another")
    slot.process.join()
    slot.conn.close()
    return start(slot.slot)


def _stop(slots: list[_Slot]) -> None:
    for slot in slots:
        try:
            slot.conn.send(None)
        except OSError:  # already gone
            pass
    for slot in slots:
        slot.process.join(timeout=10 if slot.item is None else 0.5)
        if (
            slot.process.is_alive()
        ):  # interrupted mid-job: its lock dies with it, its segments stay for a resume
            slot.process.terminate()
            slot.process.join()
        slot.conn.close()
