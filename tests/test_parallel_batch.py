"""Many processes on one batch: claims through output locks, --workers N, persona shards, the affinity queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cli.batch import run_batch
from cli.main import app
from cli.schedule import AffinityQueue
from pipelines.media.video_in import iter_frames
from tests.parallel_helpers import KillOnce, child_pids
from tests.project_helpers import make_project, tone_wav

REPO = Path(__file__).resolve().parents[1]

JOB = """\
kind: summary
persona: {persona}
seed: {seed}
audio: ../{audio}
output: {{size: [96, 96]}}
"""


def job(seed: int, audio: str = "short.wav", persona: str = "test") -> str:
    return JOB.format(persona=persona, seed=seed, audio=audio)


def project(root: Path, jobs: dict[str, str]) -> Path:
    tone_wav(root / "short.wav", 0.6)
    return make_project(root, jobs, persona_size=160)


def cli(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "render", *args, "--json", "--no-qc"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def statuses(reports: list[dict]) -> dict[str, list[str]]:
    """job stem -> the status each process gave it."""
    out: dict[str, list[str]] = {}
    for report in reports:
        for j in report["jobs"]:
            out.setdefault(Path(j["job"]).stem, []).append(j["status"])
    return out


def frames(path: Path) -> list[np.ndarray]:
    return list(iter_frames(path))


def test_three_processes_split_six_jobs_and_one_killed_mid_job_is_finished_by_the_others(tmp_path):
    tone_wav(tmp_path / "long.wav", 12.0)  # 300 frames: two segments, the first committed before the kill
    jobs = project(tmp_path, {"a_long": job(0, "long.wav"), **{f"j{i}": job(i) for i in range(1, 6)}})

    first = cli(tmp_path, str(jobs), "--out", "out")
    work = tmp_path / "out" / ".talkreel"
    deadline = time.time() + 240
    while not list(work.glob("a_long-*/segments/segment_*.mp4")):
        assert first.poll() is None, first.stderr.read()
        assert time.time() < deadline, "no segment of a_long within 240 s"
        time.sleep(0.05)
    # Frozen at once, so a fast machine cannot finish a_long before the kill; it keeps holding a_long's claim
    # while the others start, as a process killed mid-job would.
    first.send_signal(signal.SIGSTOP)
    others = [cli(tmp_path, str(jobs), "--out", "out") for _ in range(2)]
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    first.wait()
    results = [p.communicate(timeout=300) for p in others]
    for proc, (_, err) in zip(others, results, strict=True):
        assert proc.returncode == 0, err
    seen = statuses([json.loads(out) for out, _ in results])

    assert sorted(seen) == ["a_long", "j1", "j2", "j3", "j4", "j5"]
    for stem, given in seen.items():
        # rendered by one surviving process at most (the killed one may have finished a few before it died)
        assert given.count("rendered") <= 1, (stem, given)
        assert set(given) <= {"rendered", "rendered elsewhere", "up to date"}, (stem, given)
    assert seen["a_long"].count("rendered") == 1  # taken over from the killed process
    assert len(list((tmp_path / "out").glob("*.mp4"))) == 6

    # a_long resumed after the kill: the same frames as a run nobody interrupted
    serial = cli(tmp_path, str(jobs / "a_long.yaml"), "--out", "serial")
    _, err = serial.communicate(timeout=300)
    assert serial.returncode == 0, err
    resumed, clean = frames(tmp_path / "out" / "a_long.mp4"), frames(tmp_path / "serial" / "a_long.mp4")
    assert len(resumed) == len(clean) == 300
    assert all(np.array_equal(a, b) for a, b in zip(resumed, clean, strict=True))


def test_three_processes_render_each_of_six_jobs_exactly_once(tmp_path):
    jobs = project(tmp_path, {f"j{i}": job(i) for i in range(6)})
    procs = [cli(tmp_path, str(jobs), "--out", "out") for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    reports = [json.loads(out) for out, _ in results]
    for stem, given in statuses(reports).items():
        assert given.count("rendered") == 1, (stem, given)
        assert set(given) <= {"rendered", "rendered elsewhere", "up to date"}, (stem, given)
    records = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("j*.json")]
    assert sorted(Path(r["job"]).stem for r in records) == [f"j{i}" for i in range(6)]


def test_workers_render_on_worker_processes_like_a_serial_run_and_replace_a_killed_one(tmp_path, monkeypatch):
    tone_wav(tmp_path / "long.wav", 8.0)  # 200 frames: its worker is killed at frame 30 or later
    jobs = project(tmp_path, {"a_long": job(0, "long.wav"), **{f"j{i}": job(i) for i in range(1, 4)}})
    monkeypatch.chdir(tmp_path)
    reporter = KillOnce("a_long")
    before = child_pids()
    # --devices sets each worker's CUDA_VISIBLE_DEVICES (the preview engine renders on the CPU whatever it says)
    result = run_batch([jobs], tmp_path / "pool", devices="0,1", qc=False, reporter=reporter)
    # no process of the pool outlives it: workers reaped, and the resource tracker their spawning started stopped
    # (left running, it was a child that later tests of this process did not expect)
    assert child_pids() <= before
    assert reporter.killed
    assert result.exit_code == 0, result.as_dict()
    report = result.as_dict()
    assert report["counts"] == {"rendered": 4}
    assert [Path(j["job"]).stem for j in report["jobs"]] == ["a_long", "j1", "j2", "j3"]  # plan order
    assert [stem for stem, _ in reporter.started].count(
        "a_long"
    ) == 2  # killed, then resumed by another worker
    assert any("died (signal 9) while rendering" in e and "a_long.yaml" in e for e in reporter.events)
    workers = {j["worker"] for j in report["jobs"]}
    assert len(workers) >= 2 and str(os.getpid()) not in {w.split(":")[1] for w in workers}

    serial = CliRunner().invoke(
        app, ["render", str(jobs / "a_long.yaml"), "--out", "serial", "--json", "--no-qc"]
    )
    assert serial.exit_code == 0, serial.output
    assert json.loads(serial.stdout)["jobs"][0].keys() == report["jobs"][0].keys()  # one shape of summary
    pooled, alone = frames(tmp_path / "pool" / "a_long.mp4"), frames(tmp_path / "serial" / "a_long.mp4")
    assert len(pooled) == len(alone) == 200
    assert all(np.array_equal(a, b) for a, b in zip(pooled, alone, strict=True))


def test_persona_shards_keep_each_persona_in_one_share(tmp_path, monkeypatch):
    jobs = project(
        tmp_path, {"a": job(1), "b": job(2), "c": job(3, persona="other"), "d": job(4, persona="other")}
    )
    (tmp_path / "personas" / "other").mkdir()
    for name in ("portrait.png", "persona.yaml"):
        (tmp_path / "personas" / "other" / name).write_bytes(
            (tmp_path / "personas" / "test" / name).read_bytes()
        )
    monkeypatch.chdir(tmp_path)
    shares = []
    for k in (1, 2):
        args = [
            "render",
            str(jobs),
            "--out",
            "out",
            "--dry-run",
            "--json",
            "--shard",
            f"{k}/2",
            "--shard-by",
            "persona",
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        shares.append(sorted(Path(j["job"]).stem for j in json.loads(result.stdout)["jobs"]))
    assert sorted(shares) == [["a", "b"], ["c", "d"]]
    bad = CliRunner().invoke(app, ["render", str(jobs), "--dry-run", "--shard", "1/2", "--shard-by", "look"])
    assert bad.exit_code == 2
    assert "--shard-by: expected one of job, persona" in bad.output


def test_bad_worker_options_are_one_line_errors(tmp_path, monkeypatch):
    jobs = project(tmp_path, {"a": job(1)})
    monkeypatch.chdir(tmp_path)
    for args, expected in [
        (["--workers", "0"], "--workers: expected a number of workers >= 1, got 0"),
        (["--devices", "0,gpu1"], "--devices: expected CUDA device numbers such as 0,1, got '0,gpu1'"),
        (["--executor", "dask"], "--executor: expected one of local, ray, got 'dask'"),
        (["--address", "10.0.0.1:6379"], "--address: a Ray cluster's address; give it with --executor ray"),
        (["--executor", "ray", "--devices", "0"], "--devices: Ray gives each actor its GPU"),
    ]:
        result = CliRunner().invoke(app, ["render", str(jobs), "--out", "out", *args])
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output


class _Plan:
    """The two things the affinity queue reads of a planned job."""

    def __init__(self, engine: str, persona: str):
        self.engine_name = engine
        self.loaded = type("Loaded", (), {"persona_file": Path(persona) / "persona.yaml"})()


def test_affinity_queue_sends_a_persona_back_to_the_worker_that_prepared_it():
    plans = [_Plan("preview", p) for p in ("anna", "ben", "anna", "ben", "anna", "cleo")]
    queue = AffinityQueue.of(list(enumerate(plans)))
    assert queue.take(0).index == 0  # anna -> worker 0
    assert queue.take(1).index == 1  # ben, nobody's yet -> worker 1
    assert queue.take(1).index == 3  # worker 1's own persona first
    assert queue.take(0).index == 2
    assert queue.take(1).index == 5  # ben is done: cleo, nobody's, before anna's (worker 0's)
    assert queue.take(1).index == 4  # only anna's left: taken rather than idling
    assert queue.take(0) is None


def test_affinity_queue_leaves_held_jobs_for_last_and_then_waits_for_them():
    plans = [_Plan("preview", "anna") for _ in range(3)]
    queue = AffinityQueue.of(list(enumerate(plans)))
    first = queue.take(0)
    queue.hold(first)  # another process held its output
    assert [queue.take(0).index, queue.take(0).index] == [1, 2]
    again = queue.take(0)
    assert again.index == 0 and again.wait
    assert queue.take(0) is None and len(queue) == 0
