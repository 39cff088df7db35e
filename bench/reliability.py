"""How many of the hostile-tester cases hold: bad inputs, kills, resumes and concurrent processes.

Every case builds a small project in a temp folder and runs the real CLI (`python -m cli`, this checkout) the
way a user would: a corpus of broken inputs (each must be its own job's one-line error while the good job beside
it renders), kills at several moments of a render (the output folder must always hold a complete set that its
record describes, or nothing), and two processes on the same outputs. It prints one line per case and the
count that held, so the figure can be tracked (`make reliability`).

    python bench/reliability.py            # every case (~2-4 min on 2 cores)
    python bench/reliability.py -k kill    # the cases whose name contains "kill"
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.project_helpers import PERSONA_YAML, make_project, portrait, tone_wav  # noqa: E402

GOOD = """\
kind: summary
persona: test
audio: {text: "Hello there, this is a short draft.", voice: en}
output: {size: [128, 128]}
"""
RECORDED = """\
kind: summary
persona: test
audio: ../take.wav
output: {size: [128, 128]}
"""


class Case:
    """One temp project and the CLI run inside it."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "TALKREEL_CACHE": str(root / "cache")}

    def project(self, jobs: dict[str, str]) -> Path:
        tone_wav(self.root / "take.wav", 2.0)
        return make_project(self.root, jobs, persona_size=192)

    def cli(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def render(self, *args: str) -> tuple[int, dict]:
        proc = self.cli("render", *args, "--json")
        out, err = proc.communicate(timeout=600)
        try:
            return proc.returncode, json.loads(out)
        except ValueError:
            return proc.returncode, {"stderr": err[-500:]}

    def outcome(self, report: dict, stem: str) -> dict:
        return next((j for j in report.get("jobs", []) if Path(j["job"]).stem == stem), {})

    def consistent(self, out: Path, stem: str) -> bool:
        """Nothing, or an MP4 whose record names its exact size and hash."""
        from pipelines.publish import matches_record, read_record

        mp4 = out / f"{stem}.mp4"
        record = read_record(mp4)
        if not mp4.exists():
            return not record
        return not record or matches_record(mp4, record)  # a record-less MP4 is re-rendered, never trusted


def _bad_job_among_good(name: str, job: str, expect: str, setup: Callable[[Case], None] | None = None):
    """A case: `job` is refused with a message containing `expect`, and the good job beside it renders."""

    def case(c: Case) -> str | None:
        jobs = c.project({"good": GOOD, name: job})
        if setup:
            setup(c)
        code, report = c.render(str(jobs), "--out", "out", "--no-qc")
        good, bad = c.outcome(report, "good"), c.outcome(report, name)
        if good.get("status") != "rendered":
            return f"the good job did not render: exit {code}, {good or report}"
        if expect not in bad.get("error", "") or bad.get("status") not in ("invalid", "failed"):
            return f"expected an error with {expect!r}, got {bad or report}"
        if code not in (2, 3) or "\n" in bad["error"]:
            return f"exit {code}, error {bad['error']!r}"
        return None

    case.__name__ = f"bad input: {name}"
    return case


def _persona(c: Case, name: str, image: Callable[[Path], None]) -> None:
    folder = c.root / "personas" / name
    folder.mkdir(parents=True)
    image(folder / "portrait.png")
    (folder / "persona.yaml").write_text(PERSONA_YAML)


def _png_claiming(path: Path, width: int, height: int) -> None:
    from PIL import Image

    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def _text_chunk_png(path: Path) -> None:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * 4_000_000, zip=True)
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)


def _grey16_png(path: Path) -> None:
    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.fromarray(portrait(192)).convert("L")).astype(np.uint16) * 257
    Image.fromarray(grey).save(path)


def _nan_wav(c: Case) -> None:
    import numpy as np

    from pipelines.media.ffmpeg import run_ffmpeg

    samples = (0.3 * np.sin(np.arange(32000) * 0.07)).astype("<f4")
    samples[9000:9100] = np.nan
    (c.root / "nan.f32").write_bytes(samples.tobytes())
    args = ["-f", "f32le", "-ar", "16000", "-ac", "1", "-i", str(c.root / "nan.f32"), "-c:a", "pcm_f32le"]
    run_ffmpeg([*args, str(c.root / "nan.wav")], what="bench wav")


BAD_INPUTS = [
    _bad_job_among_good(
        "bomb_photo",
        GOOD.replace("persona: test", "persona: bomb"),
        "persona 'bomb' has errors",
        lambda c: _persona(c, "bomb", lambda p: _png_claiming(p, 20000, 20000)),
    ),
    _bad_job_among_good(
        "text_chunk_png",
        GOOD.replace("persona: test", "persona: chunk"),
        "persona 'chunk' has errors",
        lambda c: _persona(c, "chunk", _text_chunk_png),
    ),
    _bad_job_among_good("deep_yaml", GOOD + "emotion: " + "[" * 3000 + "]" * 3000 + "\n", "nest"),
    _bad_job_among_good("huge_yaml", GOOD + "# " + "x" * 2_000_000 + "\n", "a spec file may be at most"),
    _bad_job_among_good("duplicate_key", GOOD + "kind: intro\n", "duplicate key 'kind'"),
    _bad_job_among_good("infinite_start", GOOD + "emotion: [{start: .inf, emotion: happy}]\n", "finite"),
    _bad_job_among_good(
        "python_tag", GOOD + "seed: !!python/object/apply:os.system [true]\n", "invalid YAML"
    ),
    _bad_job_among_good(
        "blocked_output_folder",
        GOOD.replace("[128, 128]}", "[128, 128], path: sub/x.mp4}"),
        "is a file",
        lambda c: ((c.root / "out").mkdir(), (c.root / "out" / "sub").write_text("a file")),
    ),
    _bad_job_among_good(
        "long_output_name", GOOD.replace("[128, 128]}", f"[128, 128], path: {'n' * 240}.mp4}}"), "at most 200"
    ),
    _bad_job_among_good(
        "escaping_output", GOOD.replace("[128, 128]}", "[128, 128], path: ../x.mp4}"), "leaves"
    ),
    _bad_job_among_good("nan_wav", RECORDED.replace("take.wav", "nan.wav"), "non-finite samples", _nan_wav),
    _bad_job_among_good(
        "garbage_audio",
        RECORDED.replace("take.wav", "junk.wav"),
        "junk.wav",
        lambda c: (c.root / "junk.wav").write_bytes(b"RIFF nonsense"),
    ),
    _bad_job_among_good(
        "blank_text", GOOD.replace("Hello there, this is a short draft.", "   "), "whitespace"
    ),
    _bad_job_among_good(
        "unknown_voice", GOOD.replace("voice: en", "voice: xx-nope"), "unknown espeak-ng voice"
    ),
    _bad_job_among_good("burn_in_without_script", RECORDED + "captions: {burn_in: true}\n", "add `script:`"),
    _bad_job_among_good(
        "chapter_after_end", RECORDED + "chapters: [{at: 30, text: Late}]\n", "not before the end"
    ),
    _bad_job_among_good(
        "fake_theme_font",
        GOOD + "theme: ../theme.yaml\n",
        "theme",
        lambda c: ((c.root / "f.ttf").write_text("no"), (c.root / "theme.yaml").write_text("font: f.ttf\n")),
    ),
    _bad_job_among_good(
        "emotion_out_of_range",
        GOOD.replace("persona: test", "persona: wide"),
        "persona 'wide' has errors",
        lambda c: (
            _persona(c, "wide", lambda p: __import__("PIL.Image").Image.fromarray(portrait(192)).save(p)),
            (c.root / "personas" / "wide" / "persona.yaml").write_text(
                PERSONA_YAML + "emotions: {wide: {eye_open: 5}}\n"
            ),
        ),
    ),
]


def case_tenth_of_a_second_intro(c: Case) -> str | None:
    tone_wav(c.root / "blip.wav", 0.1)
    jobs = c.project({"blip": RECORDED.replace("take.wav", "blip.wav").replace("summary", "intro")})
    code, report = c.render(str(jobs), "--out", "out", "--no-qc")
    return None if code == 0 else f"exit {code}: {report}"


def case_grey16_photo(c: Case) -> str | None:
    jobs = c.project({"one": GOOD.replace("persona: test", "persona: grey")})
    _persona(c, "grey", _grey16_png)
    code, report = c.render(str(jobs), "--out", "out", "--no-qc")
    return None if code == 0 else f"exit {code}: {report}"


def case_kill_at_many_moments(c: Case) -> str | None:
    """SIGKILL at 8 moments of one render (with QC): after each, the folder is consistent; the last run is whole."""
    tone_wav(c.root / "long.wav", 24.0)  # 600 frames: three segments
    jobs = c.project({"long": RECORDED.replace("take.wav", "long.wav")})
    out = c.root / "out"
    for delay in (1.5, 3.0, 4.5, 6.0, 8.0, 10.0, 13.0, 17.0):
        proc = c.cli("render", str(jobs), "--out", "out", "--quiet")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if not c.consistent(out, "long"):
            return f"inconsistent output after a kill at {delay} s"
        strays = [p.name for p in out.glob("*.part*")] if out.is_dir() else []
        if strays:
            return f"stray files beside the outputs after a kill at {delay} s: {strays}"
    code, report = c.render(str(jobs), "--out", "out")
    if code != 0 or not c.consistent(out, "long") or not (out / "long.json").is_file():
        return f"the resumed render did not finish whole: exit {code}, {report}"
    return None


def case_kill_then_resume_is_identical(c: Case) -> str | None:
    from pipelines.media.video_in import iter_frames
    from pipelines.publish import file_digest

    tone_wav(c.root / "long.wav", 16.0)
    jobs = c.project({"long": RECORDED.replace("take.wav", "long.wav")})
    proc = c.cli("render", str(jobs), "--out", "killed", "--quiet", "--no-qc")
    work = c.root / "killed" / ".talkreel"
    deadline = time.time() + 300
    while time.time() < deadline and not list(work.glob("*/segments/segment_*.mp4")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    c.render(str(jobs), "--out", "killed", "--no-qc")
    c.render(str(jobs), "--out", "clean", "--no-qc")
    a, b = c.root / "killed" / "long.mp4", c.root / "clean" / "long.mp4"
    if not (a.is_file() and b.is_file()):
        return "an output is missing"
    frames_a, frames_b = list(iter_frames(a)), list(iter_frames(b))
    same = len(frames_a) == len(frames_b) and all(
        (x == y).all() for x, y in zip(frames_a, frames_b, strict=True)
    )
    return None if same else f"resumed frames differ (mp4 sha {file_digest(a)[:12]} vs {file_digest(b)[:12]})"


def case_two_processes_same_jobs(c: Case) -> str | None:
    jobs = c.project({"one": GOOD})
    procs = [c.cli("render", str(jobs), "--out", "out", "--json", "--no-qc") for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    statuses = sorted(json.loads(out)["jobs"][0]["status"] for out, _ in results)
    if statuses not in (["rendered", "up to date"], ["rendered", "rendered elsewhere"]):
        return f"statuses {statuses}"
    return None if c.consistent(c.root / "out", "one") else "inconsistent output"


def case_two_processes_two_jobs_one_output(c: Case) -> str | None:
    same = GOOD.replace("[128, 128]}", "[128, 128], path: same.mp4}")
    jobs = c.project({"a": same, "b": same.replace("Hello", "Hi")})
    procs = [c.cli("render", str(jobs / f"{n}.yaml"), "--out", "out", "--json", "--no-qc") for n in "ab"]
    results = [json.loads(p.communicate(timeout=600)[0])["jobs"][0] for p in procs]
    statuses = sorted(r["status"] for r in results)
    if statuses != ["failed", "rendered"]:
        return f"statuses {statuses}"
    winner = next(r for r in results if r["status"] == "rendered")["job"]
    record = json.loads((c.root / "out" / "same.json").read_text())
    return None if Path(winner).name == Path(record["job"]).name else "the record names the wrong job"


def case_truncated_output_is_rerendered(c: Case) -> str | None:
    jobs = c.project({"one": GOOD})
    c.render(str(jobs), "--out", "out", "--no-qc")
    mp4 = c.root / "out" / "one.mp4"
    mp4.write_bytes(mp4.read_bytes()[:1000])
    _, report = c.render(str(jobs), "--out", "out", "--no-qc")
    status = c.outcome(report, "one").get("status")
    return None if status == "rendered" else f"status {status!r}"


def case_captions_off_removes_old_captions(c: Case) -> str | None:
    jobs = c.project({"one": GOOD})
    c.render(str(jobs), "--out", "out", "--no-qc")
    (jobs / "one.yaml").write_text(GOOD + "captions: {srt: false, vtt: false}\n")
    c.render(str(jobs), "--out", "out", "--no-qc")
    left = [p.name for p in (c.root / "out").glob("one.*") if p.suffix in (".srt", ".vtt")]
    return f"stale captions: {left}" if left else None


def case_ctrl_c_reports_interrupted(c: Case) -> str | None:
    tone_wav(c.root / "long.wav", 20.0)
    jobs = c.project({"long": RECORDED.replace("take.wav", "long.wav")})
    proc = c.cli("render", str(jobs), "--out", "out")
    time.sleep(4.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if "up to date" in err:
        return f"reported up to date: {err[-300:]}"
    return None if proc.returncode != 0 else "exit 0 after Ctrl-C"


def case_cjk_text_and_label_are_drawn(c: Case) -> str | None:
    jobs = c.project(
        {"cjk": GOOD.replace("summary", "intro") + "title: {text: 欢迎, subtitle: 안녕하세요}\n"}
    )
    persona = c.root / "personas" / "test" / "persona.yaml"
    persona.write_text(persona.read_text() + "disclosure: {text: AI生成の動画}\n")
    code, _ = c.render(str(jobs), "--out", "out", "--no-qc")
    record = json.loads((c.root / "out" / "cjk.json").read_text()) if code == 0 else {}
    composed = record.get("composition", {})
    if composed.get("missing_glyphs") or composed.get("label", {}).get("text") != "AI生成の動画":
        return f"exit {code}, glyphs missing {composed.get('missing_glyphs')}, label {composed.get('label')}"
    return None


def case_mismatched_script_is_reported(c: Case) -> str | None:
    import wave

    import numpy as np

    from pipelines.speech.tts import synthesize

    said = synthesize(
        "The quick brown fox jumps over the lazy dog. Pack my box with five dozen jugs.", voice="en-us"
    )
    with wave.open(str(c.root / "said.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(said.sample_rate)
        w.writeframes((np.clip(said.samples, -1, 1) * 32767).astype("<i2").tobytes())
    script = "script: Good morning to you all, and welcome to the weekly summary.\n"
    jobs = c.project({"one": RECORDED.replace("take.wav", "said.wav") + script})
    code, report = c.render(str(jobs), "--out", "out", "--no-qc")
    warnings = c.outcome(report, "one").get("warnings") or []
    return (
        None if any("does not seem to match" in w for w in warnings) else f"exit {code}, warnings {warnings}"
    )


def case_short_video_persona_loop_is_said(c: Case) -> str | None:
    from PIL import Image

    from pipelines.media.ffmpeg import run_ffmpeg

    jobs = c.project({"one": RECORDED})
    persona = c.root / "personas" / "test"
    Image.fromarray(portrait(256)).save(c.root / "still.png")
    args = ["-loop", "1", "-framerate", "25", "-t", "0.8", "-i", str(c.root / "still.png"), "-c:v", "libx264"]
    run_ffmpeg([*args, "-pix_fmt", "yuv420p", "-y", str(persona / "clip.mp4")], what="bench persona video")
    text = (persona / "persona.yaml").read_text().replace("portrait.png", "clip.mp4")
    (persona / "persona.yaml").write_text(text + "loop: hold\n")
    code, report = c.render(str(jobs), "--out", "out", "--no-qc")
    warnings = c.outcome(report, "one").get("warnings") or []
    return None if any("holds its last frame" in w for w in warnings) else f"exit {code}, warnings {warnings}"


def case_face_pick_beyond_the_faces_is_refused(c: Case) -> str | None:
    jobs = c.project({"one": GOOD})
    persona = c.root / "personas" / "test" / "persona.yaml"
    persona.write_text(persona.read_text() + "face: {index: 3}\n")
    proc = c.cli("validate", str(jobs), "--json")
    out, _ = proc.communicate(timeout=300)
    errors = json.loads(out)["errors"] if out.strip().startswith("{") else []
    if proc.returncode == 2 and any(e["field"] == "face" and "shows 1 face" in e["message"] for e in errors):
        return None
    return f"exit {proc.returncode}: {errors}"


def case_face_pick_is_followed_through_a_group_video(c: Case) -> str | None:
    """Two people in a video, the persona picks the smaller one: its mouth speaks, the other's stays as filmed."""
    import numpy as np

    from pipelines.engines.base import loop_frame
    from pipelines.media.video_in import iter_frames
    from tests import face_helpers as fh

    jobs = c.project({"one": GOOD.replace("output: {size: [128, 128]}\n", "")})
    persona = c.root / "personas" / "test"
    group, _ = fh.two_faces()  # a large face on the left, a 0.6x copy on the right (360 x 720)
    frames = [np.roll(group, 2 * i, axis=1) for i in range(30)]  # both drift right, 2 px a frame
    fh.write_video(persona / "group.mp4", frames)
    text = (persona / "persona.yaml").read_text().replace("portrait.png", "group.mp4")
    (persona / "persona.yaml").write_text(text + "face: {index: 1}\ndisclosure: {label: false}\n")
    code, _ = c.render(str(jobs), "--out", "out", "--no-qc")
    if code != 0:
        return f"exit {code}"
    source = list(iter_frames(persona / "group.mp4"))
    moved = {"picked": [], "other": []}
    for k, frame in enumerate(iter_frames(c.root / "out" / "one.mp4")):
        j = loop_frame(k, len(source), "pingpong")
        diff = np.abs(frame.astype(np.int16) - source[j]).mean(axis=2)
        x = 2 * j
        moved["other"].append(diff[150:180, 130 + x : 180 + x].mean())  # the large face's mouth
        moved["picked"].append(diff[185:205, 540 + x : 575 + x].mean())  # the small face's mouth
    picked, other = (float(np.max(v)) for v in (moved["picked"], moved["other"]))
    return None if picked > 2 * other else f"mouth change: picked face {picked:.1f}, other face {other:.1f}"


CASES: list[Callable[[Case], str | None]] = [
    *BAD_INPUTS,
    case_tenth_of_a_second_intro,
    case_grey16_photo,
    case_kill_at_many_moments,
    case_kill_then_resume_is_identical,
    case_two_processes_same_jobs,
    case_two_processes_two_jobs_one_output,
    case_truncated_output_is_rerendered,
    case_captions_off_removes_old_captions,
    case_ctrl_c_reports_interrupted,
    case_cjk_text_and_label_are_drawn,
    case_mismatched_script_is_reported,
    case_short_video_persona_loop_is_said,
    case_face_pick_beyond_the_faces_is_refused,
    case_face_pick_is_followed_through_a_group_video,
]


def name_of(case: Callable) -> str:
    return case.__name__.removeprefix("case_").replace("_", " ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only cases whose name contains this")
    args = parser.parse_args()
    chosen = [case for case in CASES if args.k.replace("_", " ") in name_of(case)]
    held = 0
    t_all = time.perf_counter()
    for case in chosen:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                problem = case(Case(Path(tmp)))
            except Exception:
                problem = "crashed: " + traceback.format_exc().strip().splitlines()[-1]
        held += problem is None
        mark = "held  " if problem is None else "FAILED"
        print(f"{mark} {name_of(case):<40} {time.perf_counter() - t0:6.1f} s  {problem or ''}", flush=True)
    print(f"{held}/{len(chosen)} held ({time.perf_counter() - t_all:.0f} s)")
    return 0 if held == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
