"""One output, one truth: an MP4, its sidecars and its record are published together or not at all."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.cache import DiskArrayCache, FileHasher
from pipelines.engines.preview.engine import PreviewEngine
from pipelines.errors import RenderError
from pipelines.render import plan_job, render_job
from pipelines.spec.loader import load_batch
from tests.project_helpers import make_project

JOB = """\
kind: summary
persona: test
audio: {text: "Hello there, friends.", voice: en}
output: {size: [128, 128]}
"""


def _plan(tmp_path: Path, jobs: Path, name: str = "one", force: bool = False):
    (loaded,) = load_batch([jobs / f"{name}.yaml"]).jobs
    return plan_job(loaded, tmp_path / "out", FileHasher(), force=force)


def _render(tmp_path: Path, jobs: Path, qc: bool = False, name: str = "one") -> dict:
    return render_job(_plan(tmp_path, jobs, name), PreviewEngine(), DiskArrayCache(tmp_path / "cache"), qc=qc)


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_a_failure_after_encoding_leaves_the_previous_set_untouched(tmp_path, monkeypatch):
    jobs = make_project(tmp_path, {"one": JOB})
    _render(tmp_path, jobs, qc=True)
    before = _snapshot(tmp_path / "out")
    assert set(before) == {"one.mp4", "one.json", "one.srt", "one.vtt", "one.contact.png"}

    (jobs / "one.yaml").write_text(JOB.replace("Hello there, friends.", "Goodbye now, friends."))

    def disk_full(self, path, sheet=None):  # the QC step, after the MP4 is encoded
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pipelines.qc.sampling.QcSampler.finish", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _render(tmp_path, jobs, qc=True)
    assert _snapshot(tmp_path / "out") == before  # the old set, whole, and no stray file beside it

    monkeypatch.undo()
    record = _render(tmp_path, jobs, qc=True)
    assert record["output_file"]["bytes"] == (tmp_path / "out" / "one.mp4").stat().st_size
    assert json.loads((tmp_path / "out" / "one.json").read_text())["content_hash"] == record["content_hash"]


def test_captions_turned_off_remove_the_previous_caption_files(tmp_path):
    jobs = make_project(tmp_path, {"one": JOB})
    _render(tmp_path, jobs)
    assert (tmp_path / "out" / "one.srt").is_file() and (tmp_path / "out" / "one.vtt").is_file()
    (jobs / "one.yaml").write_text(JOB + "captions: {srt: false, vtt: false}\n")
    record = _render(tmp_path, jobs)
    assert record["sidecars"] == []
    assert not (tmp_path / "out" / "one.srt").exists()
    assert not (tmp_path / "out" / "one.vtt").exists()


def test_a_truncated_output_is_not_up_to_date(tmp_path):
    jobs = make_project(tmp_path, {"one": JOB})
    _render(tmp_path, jobs)
    assert _plan(tmp_path, jobs).up_to_date
    mp4 = tmp_path / "out" / "one.mp4"
    mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    assert not _plan(tmp_path, jobs).up_to_date


def test_an_edited_job_removes_its_interrupted_work_folder(tmp_path):
    class FailingEngine(PreviewEngine):
        def render(self, *args, **kwargs):
            for i, frame in enumerate(super().render(*args, **kwargs)):
                if i == 5:
                    raise RenderError("broke")
                yield frame

    jobs = make_project(tmp_path, {"one": JOB})
    with pytest.raises(RenderError):
        render_job(_plan(tmp_path, jobs), FailingEngine(), DiskArrayCache(tmp_path / "cache"), qc=False)
    work_root = tmp_path / "out" / ".talkreel"
    left = [p for p in work_root.iterdir() if p.is_dir()]
    assert left  # the interrupted version's work, kept for a resume
    (jobs / "one.yaml").write_text(JOB.replace("friends", "folks"))
    _render(tmp_path, jobs)
    assert not [p for p in work_root.iterdir() if p.is_dir()]


def test_a_kill_while_publishing_is_finished_by_the_next_run(tmp_path, monkeypatch):
    import pipelines.publish as publish

    jobs = make_project(tmp_path, {"one": JOB})
    moved = []

    def killed_after_the_mp4(temp, final):
        if moved:
            raise KeyboardInterrupt  # the process dies between two renames
        moved.append(final)
        real_move(temp, final)

    real_move = publish.move_into_place
    monkeypatch.setattr(publish, "move_into_place", killed_after_the_mp4)
    with pytest.raises(KeyboardInterrupt):
        _render(tmp_path, jobs)
    monkeypatch.undo()
    assert moved == [tmp_path / "out" / "one.mp4"]
    assert not _plan(tmp_path, jobs).up_to_date  # an MP4 without its record is not taken for done

    class NoFrames(PreviewEngine):
        def render(self, *args, **kwargs):
            raise AssertionError("the publish is finished without rendering again")

    record = render_job(_plan(tmp_path, jobs), NoFrames(), DiskArrayCache(tmp_path / "cache"), qc=False)
    assert {p.name for p in (tmp_path / "out").iterdir() if p.is_file()} == {
        "one.mp4",
        "one.json",
        "one.srt",
        "one.vtt",
    }
    assert _plan(tmp_path, jobs).up_to_date
    assert record["output_file"]["bytes"] == (tmp_path / "out" / "one.mp4").stat().st_size


def test_two_jobs_of_two_batches_on_one_output_are_refused(tmp_path, monkeypatch):
    make_project(
        tmp_path,
        {
            "one": JOB.replace("[128, 128]}", "[128, 128], path: same.mp4}"),
            "two": JOB.replace("[128, 128]}", "[128, 128], path: same.mp4}").replace("Hello", "Hi"),
        },
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(app, ["render", "jobs/one.yaml", "--out", "out", "--no-qc", "--quiet"])
    assert first.exit_code == 0, first.output
    before = _snapshot(tmp_path / "out")
    second = runner.invoke(app, ["render", "jobs/two.yaml", "--out", "out", "--no-qc", "--json"])
    assert second.exit_code == 3, second.output
    error = json.loads(second.stdout)["jobs"][0]["error"]
    assert "same.mp4 is the output of jobs/one.yaml" in error
    assert _snapshot(tmp_path / "out") == before
    forced = runner.invoke(app, ["render", "jobs/two.yaml", "--out", "out", "--no-qc", "--quiet", "--force"])
    assert forced.exit_code == 0, forced.output
    assert json.loads((tmp_path / "out" / "same.json").read_text())["job_key"] == "jobs/two.yaml"


def test_an_output_another_job_wrote_after_the_plan_is_refused(tmp_path):
    same = JOB.replace("[128, 128]}", "[128, 128], path: same.mp4}")
    jobs = make_project(tmp_path, {"one": same, "two": same.replace("Hello", "Hi")})
    late = _plan(tmp_path, jobs, "two")  # planned while the output is free (another process, or a worker)
    _render(tmp_path, jobs, name="one")
    with pytest.raises(RenderError, match="same.mp4 is the output of jobs/one.yaml"):
        render_job(late, PreviewEngine(), DiskArrayCache(tmp_path / "cache"), qc=False)
    assert json.loads((tmp_path / "out" / "same.json").read_text())["job_key"] == "jobs/one.yaml"
