"""End to end through `talkreel render` with the preview engine: real ffmpeg, real MediaPipe, real files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.media.probe import is_faststart, probe
from pipelines.media.video_in import iter_frames
from pipelines.render import DRAFT_PAUSE
from tests.project_helpers import make_project, portrait, tone_wav

REPO = Path(__file__).resolve().parents[1]

SUMMARY = """\
kind: summary
persona: test
audio: {text: "Hello. This is a short summary of the week.", voice: en}
emotion:
  - {start: 0, emotion: happy, intensity: 0.6}
output: {size: [256, 256]}
"""


def render(*args: str):
    return CliRunner().invoke(app, ["render", *args], catch_exceptions=False)


def check_mp4(path: Path, fps: float = 25.0) -> dict:
    info = probe(path)
    assert info.video_codec == "h264"
    assert info.pixel_format == "yuv420p"
    assert info.audio_codec == "aac"
    assert info.sample_rate == 48000
    assert is_faststart(path)
    assert abs(info.video_duration - info.audio_duration) <= 1 / fps + 1e-3
    record = json.loads(path.with_suffix(".json").read_text())
    assert abs(info.video_duration - record["frames"]["output"] / fps) <= 1e-3
    return record


def test_example_jobs_render_to_valid_mp4s(tmp_path, monkeypatch):
    """The repo's own jobs/ and demo persona, as `make demo` renders them."""
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    shutil.copytree(REPO / "personas", tmp_path / "personas")
    shutil.copytree(REPO / "themes", tmp_path / "themes")
    monkeypatch.chdir(tmp_path)
    from pipelines.engines.preview.demo import ensure_demo_portrait

    ensure_demo_portrait(tmp_path / "personas" / "demo")
    # Keep CI quick: the same jobs at a smaller size.
    result = render("jobs", "--out", "out", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rendered = [j for j in summary["jobs"] if j["status"] == "rendered"]
    assert len(rendered) >= 3
    kinds = set()
    for job in rendered:
        record = check_mp4(Path(job["output"]))
        kinds.add(record["kind"])
        speech = record["duration"]["speech"]
        assert record["frames"]["clip"] == round(speech * 25)
        assert record["audio"]["timing"] == "espeak"
        if record["kind"] == "summary":  # no card before the clip: captions start after the draft lead-in
            stamp = Path(job["output"]).with_suffix(".srt").read_text().splitlines()[1].split(" --> ")[0]
            h, m, rest = stamp.split(":")
            assert int(h) * 3600 + int(m) * 60 + float(rest.replace(",", ".")) >= DRAFT_PAUSE
    assert kinds == {"intro", "summary", "faq"}


def test_broken_job_does_not_stop_the_batch(tmp_path, monkeypatch):
    (tmp_path / "garbage.wav").write_bytes(b"RIFF not really a wav file")
    tone_wav(tmp_path / "blip.wav", 0.01)  # readable, but shorter than one frame: fails only when rendering
    text = '{text: "Hello. This is a short summary of the week.", voice: en}'
    jobs = make_project(
        tmp_path,
        {
            "a_good": SUMMARY,
            "b_missing_audio": SUMMARY.replace(text, "nope.wav"),
            "c_bad_media": SUMMARY.replace(text, "../garbage.wav"),
            "d_too_short": SUMMARY.replace(text, "../blip.wav"),
        },
    )
    monkeypatch.chdir(tmp_path)
    result = render(str(jobs), "--out", "out", "--json")
    assert result.exit_code == 3, result.output
    by_job = {Path(j["job"]).stem: j for j in json.loads(result.stdout)["jobs"]}
    assert by_job["a_good"]["status"] == "rendered"
    assert by_job["b_missing_audio"]["status"] == "invalid"
    assert "b_missing_audio.yaml" in by_job["b_missing_audio"]["error"]
    assert "audio" in by_job["b_missing_audio"]["error"]
    assert by_job["c_bad_media"]["status"] == "invalid"  # probed before anything renders
    assert "garbage.wav" in by_job["c_bad_media"]["error"]
    assert by_job["d_too_short"]["status"] == "failed"
    assert "d_too_short.yaml: audio:" in by_job["d_too_short"]["error"]
    assert "shorter than one frame" in by_job["d_too_short"]["error"]
    check_mp4(tmp_path / "out" / "a_good.mp4")
    assert not (tmp_path / "out" / "c_bad_media.mp4").exists()
    assert not (tmp_path / "out" / "d_too_short.mp4").exists()


def test_persona_without_a_face_is_refused_before_rendering(tmp_path, monkeypatch):
    from PIL import Image

    jobs = make_project(tmp_path, {"one": SUMMARY})
    Image.new("RGB", (256, 256), (90, 120, 160)).save(tmp_path / "personas" / "test" / "portrait.png")
    monkeypatch.chdir(tmp_path)
    result = render(str(jobs), "--out", "out", "--json")
    assert result.exit_code == 2, result.output
    errors = " ".join(j.get("error", "") for j in json.loads(result.stdout)["jobs"])
    assert "no face" in errors
    assert not (tmp_path / "out" / "one.mp4").exists()


def test_up_to_date_skip_and_selective_rerender(tmp_path, monkeypatch):
    jobs = make_project(tmp_path, {"one": SUMMARY, "two": SUMMARY.replace("happy", "sad")})
    monkeypatch.chdir(tmp_path)
    assert render(str(jobs), "--out", "out", "--quiet", "--no-qc").exit_code == 0
    assert json.loads((tmp_path / "out" / "one.json").read_text())["qc"] is None
    t0 = time.perf_counter()
    result = render(str(jobs), "--out", "out", "--json")
    skip_seconds = time.perf_counter() - t0
    assert result.exit_code == 0
    assert {j["status"] for j in json.loads(result.stdout)["jobs"]} == {"up to date"}
    assert skip_seconds < 1.0, skip_seconds

    (jobs / "two.yaml").write_text(SUMMARY.replace("happy", "thinking"))
    result = render(str(jobs), "--out", "out", "--json")
    statuses = {Path(j["job"]).stem: j["status"] for j in json.loads(result.stdout)["jobs"]}
    assert statuses == {"one": "up to date", "two": "rendered"}

    result = render(str(jobs), "--out", "out", "--json", "--force")
    assert {j["status"] for j in json.loads(result.stdout)["jobs"]} == {"rendered"}
    record = json.loads((tmp_path / "out" / "one.json").read_text())
    qc = record["qc"]
    assert qc["frames"] == record["frames"]["output"]
    assert qc["frames_without_face"] == 0
    assert qc["mouth_audio_correlation"] > 0.2  # the mouth follows the speech
    assert (tmp_path / "out" / "one.contact.png").is_file()


def test_dry_run_prints_the_plan_without_rendering(tmp_path, monkeypatch):
    jobs = make_project(tmp_path, {"one": SUMMARY, "two": SUMMARY.replace("happy", "sad")})
    monkeypatch.chdir(tmp_path)
    result = render(str(jobs), "--out", "out", "--dry-run", "--json")
    assert result.exit_code == 0
    planned = json.loads(result.stdout)["jobs"]
    assert [Path(j["job"]).stem for j in planned] == ["one", "two"]
    for job in planned:
        assert job["status"] == "to render" and job["engine"] == "preview" and job["frames"] > 0
    assert not (tmp_path / "out" / "one.mp4").exists()


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "render", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_killed_render_resumes_with_identical_frames(tmp_path, monkeypatch):
    tone_wav(tmp_path / "long.wav", 40.0)  # 1000 frames: four segments of 250, killed after the first
    job = SUMMARY.replace('{text: "Hello. This is a short summary of the week.", voice: en}', "../long.wav")
    jobs = make_project(tmp_path, {"long": job})
    monkeypatch.chdir(tmp_path)

    proc = _cli(tmp_path, str(jobs), "--out", "killed", "--quiet")
    work = tmp_path / "killed" / ".talkreel"
    deadline = time.time() + 120
    while time.time() < deadline and not list(work.glob("*/segments/segment_*.mp4")):
        if proc.poll() is not None:
            pytest.fail(f"render ended before the first segment: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "long.mp4").exists()  # no half file under the final name
    assert render(str(jobs), "--out", "killed", "--quiet").exit_code == 0
    assert render(str(jobs), "--out", "clean", "--quiet").exit_code == 0

    resumed = list(iter_frames(tmp_path / "killed" / "long.mp4"))
    clean = list(iter_frames(tmp_path / "clean" / "long.mp4"))
    assert len(resumed) == len(clean) == 1000
    assert all(np.array_equal(a, b) for a, b in zip(resumed, clean, strict=True))


def test_an_engine_failing_mid_render_leaves_no_output_and_no_process(tmp_path):
    # the engine's frames come from a forked child, the output audio from another, x264 from ffmpeg processes
    # started ahead: a failure in the middle stops and reaps them all
    from pipelines.cache import DiskArrayCache, FileHasher
    from pipelines.engines.preview.engine import PreviewEngine
    from pipelines.errors import RenderError
    from pipelines.render import plan_job, render_job
    from pipelines.spec.loader import load_batch

    class FailingEngine(PreviewEngine):
        def render(self, *args, **kwargs):
            for i, frame in enumerate(super().render(*args, **kwargs)):
                if i == 30:
                    raise RenderError("the engine broke at frame 30")
                yield frame

    loaded = load_batch([make_project(tmp_path, {"summary": SUMMARY})]).jobs[0]
    plan = plan_job(loaded, tmp_path / "out", FileHasher())
    with pytest.raises(RenderError, match="broke at frame 30"):
        render_job(plan, FailingEngine(), DiskArrayCache(tmp_path / "cache"), qc=False)
    assert not plan.out_path.exists()
    if hasattr(os, "fork"):
        with pytest.raises(ChildProcessError):  # no child of this process left, running or unreaped
            os.waitpid(-1, os.WNOHANG)


def test_two_processes_on_the_same_jobs_do_not_clobber(tmp_path):
    jobs = make_project(tmp_path, {"one": SUMMARY})
    a = _cli(tmp_path, str(jobs), "--out", "out", "--json")
    b = _cli(tmp_path, str(jobs), "--out", "out", "--json")
    out_a, err_a = a.communicate(timeout=300)
    out_b, err_b = b.communicate(timeout=300)
    assert a.returncode == 0, err_a
    assert b.returncode == 0, err_b
    statuses = sorted(json.loads(out)["jobs"][0]["status"] for out in (out_a, out_b))
    # Exactly one rendered; the other found the output up to date, or held by the first and then done by it.
    assert statuses in (["rendered", "up to date"], ["rendered", "rendered elsewhere"])
    check_mp4(tmp_path / "out" / "one.mp4")


def test_signed_output_verifies(tmp_path, monkeypatch):
    """Render with a local test identity; `talkreel verify` reads the watermark id and the C2PA manifest back."""
    jobs = make_project(tmp_path, {"one": SUMMARY})
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["provenance", "init", "--dir", str(tmp_path / "id")]).exit_code == 0
    monkeypatch.setenv("TALKREEL_C2PA_DIR", str(tmp_path / "id"))
    assert render(str(jobs), "--out", "out", "--quiet", "--no-qc").exit_code == 0

    record = json.loads((tmp_path / "out" / "one.json").read_text())
    assert record["provenance"]["manifest"] is True
    assert record["provenance"]["test_identity"] is True
    assert record["provenance"]["digital_source_type"] == "trainedAlgorithmicMedia"  # a photo persona

    result = runner.invoke(
        app,
        [
            "verify",
            str(tmp_path / "out" / "one.mp4"),
            "--json",
            "--trust",
            str(tmp_path / "id" / "test-ca.pem"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["watermark"]["found"] is True
    assert report["watermark"]["id"] == record["composition"]["watermark"]["id"]
    assert report["c2pa"]["verdict"] == "trusted"
    assert report["c2pa"]["talkreel"]["engine"] == "preview"


def test_shards_split_the_jobs_without_overlap(tmp_path, monkeypatch):
    jobs = make_project(tmp_path, {name: SUMMARY for name in ("a", "b", "c")})
    monkeypatch.chdir(tmp_path)
    shares = []
    for k in (1, 2):
        result = render(str(jobs), "--out", "out", "--dry-run", "--json", "--shard", f"{k}/2")
        assert result.exit_code == 0
        shares.append({Path(j["job"]).stem for j in json.loads(result.stdout)["jobs"]})
    assert shares[0] | shares[1] == {"a", "b", "c"}
    assert not shares[0] & shares[1]
    assert render(str(jobs), "--out", "out", "--dry-run", "--shard", "3/2").exit_code == 2


def test_engine_override_applies_to_every_job(tmp_path, monkeypatch):
    jobs = make_project(tmp_path, {"a": SUMMARY, "b": SUMMARY})
    monkeypatch.chdir(tmp_path)
    result = render(str(jobs), "--out", "out", "--dry-run", "--json", "--engine", "latentsync-1.6")
    assert result.exit_code == 0
    assert {j["engine"] for j in json.loads(result.stdout)["jobs"]} == {"latentsync-1.6"}
    result = render(str(jobs), "--out", "out", "--dry-run", "--engine", "warp")
    assert result.exit_code == 2
    assert (
        "unknown engine 'warp'; known: echomimic-v2, echomimic-v2-acc, echomimic-v3-flash, echomimic-v3-preview, "
        "latentsync-1.5, latentsync-1.6, musetalk-1.5, preview" in result.output
    )


def test_video_persona_at_29_97_fps(tmp_path, monkeypatch):
    """A persona video at NTSC rate (the portrait drifting slowly) becomes a 25 fps clip of exactly the audio's length."""
    from PIL import Image

    from pipelines.media.ffmpeg import run_ffmpeg

    jobs = make_project(tmp_path, {"v": SUMMARY.replace("output: {size: [256, 256]}\n", "")})
    persona = tmp_path / "personas" / "test"
    Image.fromarray(portrait(320)).save(tmp_path / "big.png")
    run_ffmpeg(
        ["-loop", "1", "-framerate", "30000/1001", "-t", "2", "-i", str(tmp_path / "big.png")]
        + ["-vf", "crop=288:224:16+16*sin(t):48", "-c:v", "libx264", "-pix_fmt", "yuv420p"]
        + ["-y", str(persona / "clip.mp4")],
        what="test persona video",
    )
    (persona / "persona.yaml").write_text(
        (persona / "persona.yaml").read_text().replace("portrait.png", "clip.mp4")
    )
    monkeypatch.chdir(tmp_path)
    result = render(str(jobs), "--out", "out", "--json")
    assert result.exit_code == 0, result.output
    record = check_mp4(tmp_path / "out" / "v.mp4")
    assert record["frames"]["clip"] == round(record["duration"]["speech"] * 25)  # longer than the 2 s source
    assert record["frames"]["without_face"] == 0
    assert record["qc"]["frames_without_face"] == 0
    info = probe(tmp_path / "out" / "v.mp4")
    assert (info.width, info.height) == (288, 224)  # a video persona keeps its own framing
