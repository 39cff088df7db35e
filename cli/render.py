"""`talkreel render`: every job of the given files/folders into finished MP4s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.batch import FAILED, INVALID, Outcome, Reporter, run_batch
from cli.errors import EXIT_OK, handle_errors, verbose
from cli.output import err_console, print_json


class RichReporter(Reporter):
    """Overall and per-job progress bars (frames, frames/s, ETA) on stderr; one line per finished job."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        self._batch_task = None
        self._jobs: dict[str, Any] = {}  # job -> its progress task (several at once with --workers / Ray)
        self._stages: dict[str, str] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def batch_planned(self, n_jobs: int) -> None:
        self._batch_task = self.progress.add_task("jobs", total=n_jobs, rate="")

    def job_started(self, job: str, total_frames: int | None, worker: str | None = None) -> None:
        if job in self._jobs:  # its worker died and another resumes it
            self.progress.remove_task(self._jobs.pop(job))
        self._jobs[job] = self.progress.add_task(Path(job).name, total=total_frames, rate="")
        self._stages.pop(job, None)

    def job_progress(self, job: str, stage: str, done: int, total: int) -> None:
        task_id = self._jobs.get(job)
        if task_id is None:
            return
        if stage != self._stages.get(job):
            self._stages[job] = stage
            self.progress.reset(task_id, total=total, description=f"{Path(job).name} [{stage}]")
        task = self.progress.tasks[self.progress.task_ids.index(task_id)]
        rate = f"{task.speed:.0f} frames/s" if task.speed else ""
        self.progress.update(task_id, completed=done, rate=rate)

    def job_finished(self, outcome: Outcome) -> None:
        task_id = self._jobs.pop(outcome.job, None)
        if task_id is not None:
            self.progress.remove_task(task_id)
        if self._batch_task is not None:
            self.progress.advance(self._batch_task)
        style = {FAILED: "red", INVALID: "red"}.get(outcome.status, "green")
        where = f" -> {outcome.output}" if outcome.output and outcome.status not in (FAILED, INVALID) else ""
        took = f" ({outcome.seconds:.1f} s)" if outcome.seconds and outcome.seconds > 0.05 else ""
        self.progress.console.print(
            f"[{style}]{outcome.status}[/{style}] {outcome.job}{where}{took}", highlight=False
        )
        if outcome.error:
            self.progress.console.print(f"  {outcome.error}", markup=False, highlight=False, soft_wrap=True)
        for warning in outcome.warnings or []:
            self.progress.console.print(
                f"  warning: {warning}", markup=False, highlight=False, soft_wrap=True
            )
        if outcome.traceback and verbose():
            self.progress.console.print(outcome.traceback, markup=False, highlight=False)

    def worker_event(self, message: str) -> None:
        self.progress.console.print(f"[yellow]{message}[/yellow]", highlight=False)

    def waiting_for_lock(self, job: str, output: Path) -> None:
        self.progress.console.print(
            f"waiting: another talkreel process is rendering {output}", highlight=False
        )


class QuietReporter(Reporter):
    """--quiet: errors only."""

    def job_finished(self, outcome: Outcome) -> None:
        if outcome.error:
            err_console.print(outcome.error, markup=False, highlight=False, soft_wrap=True)

    def worker_event(self, message: str) -> None:
        err_console.print(message, markup=False, highlight=False, soft_wrap=True)


@handle_errors
def render(
    paths: list[Path] = typer.Argument(..., help="Job files or folders of job files."),
    engine: str | None = typer.Option(None, "--engine", help="Render every job with this engine."),
    out: Path = typer.Option(Path("out"), "--out", help="Output folder."),
    force: bool = typer.Option(False, "--force", help="Render even when the output is up to date."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; render nothing."),
    shard: str | None = typer.Option(
        None, "--shard", help="K/N: render only the K-th of N shares of the jobs."
    ),
    shard_by: str = typer.Option(
        "job",
        "--shard-by",
        help="job: share the jobs round-robin; persona: every job of a persona in one share.",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Render on N worker processes (one per GPU with --devices; CPU workers for preview). "
        "With --executor ray: the number of Ray actors.",
    ),
    devices: str | None = typer.Option(
        None, "--devices", help="CUDA devices for the workers, e.g. 0,1,2,3 (one worker each by default)."
    ),
    executor: str = typer.Option(
        "local", "--executor", help="local: this machine; ray: a Ray cluster (pip install 'talkreel[ray]')."
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="With --executor ray: the cluster's address (default: RAY_ADDRESS, else a local one).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one machine-readable summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; errors only."),
    allow_outside_paths: bool = typer.Option(
        False, "--allow-outside-paths", help="Allow input paths outside the project root."
    ),
    qc: bool = typer.Option(
        True,
        "--qc/--no-qc",
        help="Measure each output (talkreel qc) into its record and write a contact sheet.",
    ),
    qc_gate: list[str] = typer.Option(
        [],
        "--qc-gate",
        metavar="NAME>=V|NAME<=V|FILE",
        help="Fail (exit 3) an output whose QC figure crosses this, or the gates of a file such as qc-gates.yaml.",
    ),
    report: bool = typer.Option(
        False, "--report", help="Write the review page <out>/report/index.html at the end (talkreel report)."
    ),
    low_vram: bool = typer.Option(
        False,
        "--low-vram",
        help="LatentSync and EchoMimic V3 jobs: keep idle models on the CPU, VAE one image at a time / in tiles "
        "(for small GPUs).",
    ),
) -> None:
    """Render every job into a finished MP4 (with a .json record beside it)."""
    gates = parse_qc_gates(qc_gate)
    kwargs = dict(
        engine=engine,
        force=force,
        dry_run=dry_run,
        shard=shard,
        allow_outside_paths=allow_outside_paths,
        qc=qc,
        low_vram=low_vram,
        shard_by=shard_by,
        workers=workers,
        devices=devices,
        executor=executor,
        address=address,
    )
    if quiet or as_json or dry_run:
        result = run_batch(paths, out, reporter=QuietReporter(), **kwargs)
    else:
        with RichReporter() as reporter:
            result = run_batch(paths, out, reporter=reporter, **kwargs)
    if not dry_run:
        gate_lines = apply_qc_gates(result.outcomes, gates)
        write_batch_summary(out, result)
        if report:
            from pipelines.qc.report import write_report

            index = write_report(out)
            if not quiet and not as_json:
                err_console.print(f"review page: {index}", highlight=False)

    if as_json:
        print_json({"dry_run": dry_run, **result.as_dict()})
    elif dry_run:
        _print_plan(result.outcomes)
    elif not quiet:
        counts = ", ".join(f"{n} {status}" for status, n in result.counts().items())
        err_console.print(f"{len(result.outcomes)} jobs: {counts}", highlight=False)
    if not dry_run:
        for line in gate_lines:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.exit_code != EXIT_OK:
        raise typer.Exit(result.exit_code)


QC_FAILED = "qc failed"


def parse_qc_gates(specs: list[str]) -> list:
    """--qc-gate values: NAME>=VALUE, NAME<=VALUE, or a gate file (pipelines.qc.gates)."""
    from pipelines.qc.gates import load_gates, parse_comparison

    gates = []
    for spec in specs:
        if ">=" in spec or "<=" in spec:
            gates.append(parse_comparison(spec, "--qc-gate"))
        else:
            gates += load_gates(spec)
    return gates


def apply_qc_gates(outcomes: list[Outcome], gates: list) -> list[str]:
    """Check each finished output's recorded QC figures (rendered now, elsewhere or up to date) against the gates; a
    failing output stays in place, its outcome becomes "qc failed" (exit 3). One line per failing output."""
    from cli.batch import ELSEWHERE, RENDERED, UP_TO_DATE
    from cli.errors import EXIT_JOBS_FAILED
    from pipelines.qc.gates import failures
    from pipelines.render import read_record

    lines = []
    for outcome in outcomes:
        if not gates or outcome.status not in (RENDERED, UP_TO_DATE, ELSEWHERE) or not outcome.output:
            continue
        reasons = failures(read_record(Path(outcome.output)).get("qc"), gates)
        if reasons:
            outcome.status, outcome.exit_code = QC_FAILED, EXIT_JOBS_FAILED
            outcome.error = f"{outcome.output}: qc gate failed: {'; '.join(reasons)}"
            lines.append(outcome.error)
    return lines


def write_batch_summary(out: Path, result) -> None:
    """The batch's outcomes as `<out>/.talkreel/last-batch.json`, for the review page (talkreel report)."""
    import datetime as dt
    import json

    from pipelines.cache import atomic_write_text

    summary = {"finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **result.as_dict()}
    (out / ".talkreel").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / ".talkreel" / "last-batch.json", json.dumps(summary, indent=2, default=str))


def _print_plan(outcomes: list[Outcome]) -> None:
    from rich.table import Table

    from pipelines.spec.paths import display

    table = Table("job", "status", "engine", "frames (est.)", "output")
    for o in outcomes:
        table.add_row(
            display(Path(o.job)),
            o.status,
            o.engine or "",
            "" if o.frames is None else str(o.frames),
            display(Path(o.output)) if o.output else o.error or "",
        )
    err_console.print(table)


def register(app: typer.Typer) -> None:
    app.command("render")(render)
