"""One bad file never stops the batch: hostile or mistaken inputs are their own job's one-line error."""

from __future__ import annotations

import errno
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from cli.main import app
from pipelines.spec import load_batch
from pipelines.spec.loader import MAX_SPEC_BYTES, MAX_SPEC_DEPTH
from tests.project_helpers import PERSONA_YAML, make_project

JOB = """\
kind: summary
persona: {persona}
audio: {{text: "Hello there, friends.", voice: en}}
output: {{size: [128, 128]{extra}}}
"""


def job(persona: str = "test", extra: str = "") -> str:
    return JOB.format(persona=persona, extra=extra)


def huge_png_header(path: Path, width: int, height: int) -> Path:
    """A small PNG file whose header claims width x height (what a decompression bomb looks like)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # chunk type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def text_bomb_png(path: Path) -> Path:
    """A valid 64x64 PNG with a compressed text chunk that inflates to 4 MB (past Pillow's limit)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * 4_000_000, zip=True)
    Image.new("RGB", (64, 64), (200, 150, 120)).save(path, pnginfo=info)
    return path


def add_persona(root: Path, name: str, image: Path) -> None:
    folder = root / "personas" / name
    folder.mkdir(parents=True)
    image.rename(folder / "portrait.png")
    (folder / "persona.yaml").write_text(PERSONA_YAML)


def test_bad_files_are_their_own_jobs_errors_and_the_rest_renders(tmp_path, monkeypatch):
    jobs = make_project(
        tmp_path,
        {
            "a_good": job(),
            "bomb": job("bomb"),
            "text_chunk": job("text_chunk"),
            "nested": job() + "emotion: " + "[" * 500 + "]" * 500 + "\n",
            "blocked": job(extra=", path: blocked/x.mp4"),
        },
    )
    add_persona(tmp_path, "bomb", huge_png_header(tmp_path / "bomb.png", 20000, 20000))
    add_persona(tmp_path, "text_chunk", text_bomb_png(tmp_path / "chunk.png"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "blocked").write_text("a file where the output folder should be")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["render", str(jobs), "--out", "out", "--json", "--no-qc"])
    assert result.exit_code == 3, result.output
    by_job = {Path(j["job"]).stem: j for j in json.loads(result.stdout)["jobs"]}
    assert by_job["a_good"]["status"] == "rendered"
    assert (tmp_path / "out" / "a_good.mp4").is_file()
    for name, words in {
        "bomb": "decodes to too many pixels",
        "text_chunk": "not a readable image",
        "nested": "nested deeper than",
        "blocked": "blocked is a file",
    }.items():
        assert by_job[name]["status"] == "invalid", (name, by_job[name])
        errors = [j["error"] for j in json.loads(result.stdout)["jobs"] if words in j.get("error", "")]
        assert errors, (name, result.stdout)
        assert all("\n" not in e for e in errors)


def test_a_photo_over_the_pixel_bound_is_refused_from_its_header(tmp_path):
    from pipelines.media.images import image_problem

    problem = image_problem(huge_png_header(tmp_path / "big.png", 8000, 8000))
    assert problem == "'big.png' is 8000x8000 (64 megapixels); at most 50 megapixels, scale it down"


def test_an_oversized_spec_is_refused_before_parsing(tmp_path):
    make_project(tmp_path, {"big": job() + "# " + "x" * MAX_SPEC_BYTES + "\n"})
    batch = load_batch([tmp_path / "jobs"])
    assert len(batch.errors) == 1
    assert f"a spec file may be at most {MAX_SPEC_BYTES} bytes" in batch.errors[0].message


def test_nesting_just_within_the_bound_is_parsed(tmp_path):
    depth = MAX_SPEC_DEPTH - 2
    make_project(tmp_path, {"deep": job() + "notes: " + "[" * depth + "]" * depth + "\n"})
    errors = load_batch([tmp_path / "jobs"]).errors
    assert [e.field for e in errors] == ["notes"]  # an unknown field: the YAML itself was read


def test_a_duplicated_key_and_an_infinite_time_are_refused(tmp_path):
    make_project(
        tmp_path,
        {
            "dup": job() + "kind: intro\n",
            "inf": job() + "emotion: [{start: .inf, emotion: happy}]\n",
        },
    )
    errors = {Path(e.file).stem: e for e in load_batch([tmp_path / "jobs"]).errors}
    assert "duplicate key 'kind'" in errors["dup"].message and "line 5" in errors["dup"].message
    assert errors["inf"].field == "emotion.0.start" and "finite" in errors["inf"].message


def test_an_over_long_output_name_is_refused_at_validate(tmp_path):
    make_project(tmp_path, {"long": job(extra=", path: " + "n" * 240 + ".mp4")})
    (error,) = load_batch([tmp_path / "jobs"]).errors
    assert error.field == "output.path" and "at most 200 bytes" in error.message


def test_theme_files_that_are_not_a_font_or_an_image_are_refused(tmp_path):
    jobs = make_project(tmp_path, {"themed": job() + "theme: ../theme.yaml\n"})
    (tmp_path / "fake.ttf").write_text("not a font")
    (tmp_path / "logo.png").write_text("not an image")
    (tmp_path / "theme.yaml").write_text("font: fake.ttf\nlogo: logo.png\n")
    messages = {e.field: e.message for e in load_batch([jobs]).errors}
    assert "not a readable TrueType/OpenType font" in messages["font"]
    assert "not a readable image" in messages["logo"]


def _engine_raising(exc: BaseException):
    from pipelines.engines.preview.engine import PreviewEngine

    class Failing(PreviewEngine):
        def render(self, *args, **kwargs):
            raise exc
            yield

    return lambda name: Failing()


def test_a_full_disk_is_said_plainly_and_the_batch_goes_on(tmp_path, monkeypatch):
    try:
        with open("/dev/full", "wb") as full:
            full.write(b"x")
            full.flush()
    except OSError as exc:
        disk_full = exc
    else:
        pytest.skip("/dev/full is not there")
    assert disk_full.errno == errno.ENOSPC
    jobs = make_project(tmp_path, {"one": job()})
    monkeypatch.setattr("pipelines.engines.base.create_engine", _engine_raising(disk_full))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["render", str(jobs), "--out", "out", "--json", "--no-qc"])
    assert result.exit_code == 3
    (outcome,) = json.loads(result.stdout)["jobs"]
    assert outcome["error"].endswith("one.yaml: no space left on the device")
    assert "internal error" not in outcome["error"]


def test_ctrl_c_does_not_report_an_unwritten_job_as_up_to_date(tmp_path, monkeypatch):
    from cli.batch import Reporter, run_batch

    class Seen(Reporter):
        statuses: list[str] = []

        def job_finished(self, outcome):
            self.statuses.append(outcome.status)

    jobs = make_project(tmp_path, {"one": job()})
    monkeypatch.setattr("pipelines.engines.base.create_engine", _engine_raising(KeyboardInterrupt()))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_batch([jobs], tmp_path / "out", qc=False, reporter=Seen())
    assert Seen.statuses == ["interrupted"]


def test_a_16_bit_greyscale_photo_reads_as_its_picture_and_shows_a_face(tmp_path):
    from pipelines.face.inspect import inspect_source
    from pipelines.media.video_in import read_image
    from tests.project_helpers import portrait

    grey = np.asarray(Image.fromarray(portrait(256)).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")  # mode I;16
    image = read_image(tmp_path / "grey16.png")
    assert np.abs(image[..., 0].astype(int) - grey).max() <= 1  # not clipped to white
    assert not [p for p in inspect_source(tmp_path / "grey16.png").problems if p.severity == "error"]


def test_a_float_wav_with_nan_samples_is_refused(tmp_path):
    from pipelines.errors import InputError
    from pipelines.media.audio import load_audio
    from pipelines.media.ffmpeg import run_ffmpeg

    samples = (0.3 * np.sin(np.arange(16000) * 0.07)).astype("<f4")
    samples[5000:5100] = np.nan
    (tmp_path / "raw.f32").write_bytes(samples.tobytes())
    wav = tmp_path / "nan.wav"
    run_ffmpeg(
        [
            "-f",
            "f32le",
            "-ar",
            "16000",
            "-ac",
            "1",
            "-i",
            str(tmp_path / "raw.f32"),
            "-c:a",
            "pcm_f32le",
            str(wav),
        ],
        what="test wav",
    )
    with pytest.raises(InputError, match="non-finite samples"):
        load_audio(wav, 16000)
