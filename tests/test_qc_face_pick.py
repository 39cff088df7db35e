"""QC measures the persona's picked face when the output shows several people (issue 13).

Two people in a still video (tests.face_helpers.two_faces: a large face on the left, a 0.6x copy on the right);
the persona picks the smaller one, so the preview engine animates its mouth and leaves the other as filmed. QC's
mouth figures must be the speaking face's, in the render and in `talkreel qc` run on the output later; a
single-face mesh returned the large, still face, and the figures said the mouth hardly moved.
"""

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.spec.persona import FacePick
from tests import face_helpers as fh
from tests.project_helpers import make_project

JOB = """\
kind: summary
persona: test
audio: {text: "Hello there, this is a short draft about the mouth moving a lot.", voice: en}
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The two-person render with QC, its record, and the output."""
    root = tmp_path_factory.mktemp("qcpick")
    jobs = make_project(root, {"one": JOB})
    persona = root / "personas" / "test"
    group, _ = fh.two_faces()
    fh.write_video(persona / "group.mp4", [group] * 10)
    text = (persona / "persona.yaml").read_text().replace("portrait.png", "group.mp4")
    (persona / "persona.yaml").write_text(text + "face: {index: 1}\ndisclosure: {label: false}\n")
    result = CliRunner().invoke(app, ["render", str(jobs), "--out", str(root / "out"), "--json"])
    assert result.exit_code == 0, result.output
    out = root / "out" / "one.mp4"
    return json.loads(out.with_suffix(".json").read_text()), out


def _figures(file, *options):
    result = CliRunner().invoke(app, ["qc", str(file), "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_render_measures_the_picked_speaking_face(rendered):
    record, _ = rendered
    qc = record["qc"]
    # the speaking face's figures: the still one's are a mouth change of ~0.13-0.37 / s, p95 opening ~0.17
    assert qc["mouth_opening_p95"] > 0.22 and qc["mouth_change_per_s"] > 0.5, qc
    assert qc["frames_without_face"] == 0
    # the preview put the picked face on the right half of the output, where it was; QC says whom it measured
    assert record["qc_face"]["x"] > 0.5 and qc["face"] == record["qc_face"]


def test_qc_later_follows_the_record_or_the_face_option(rendered):
    record, out = rendered
    later = _figures(out)
    assert later["mouth_opening_p95"] > 0.22 and later["mouth_change_per_s"] > 0.5, later
    assert later["face"] == record["qc_face"]
    other = _figures(out, "--face", "0")  # the large face, which does not speak
    assert other["face"] == {"index": 0}
    # the still face's mouth hardly changes and does not follow the speech (its lips rest slightly apart)
    assert other["mouth_change_per_s"] < later["mouth_change_per_s"] / 3, (other, later)
    assert other["mouth_opening_p95"] < later["mouth_opening_p95"] - 0.05, (other, later)
    assert other["mouth_audio_correlation"] < later["mouth_audio_correlation"], (other, later)


def test_a_bad_face_option_is_one_clear_line(rendered):
    _, out = rendered
    result = CliRunner().invoke(app, ["qc", str(out), "--face", "left"])
    assert result.exit_code != 0
    assert "--face" in result.output and "X,Y" in result.output


def test_the_follower_keeps_to_the_picked_person():
    from pipelines.face.landmarks import detect_faces
    from pipelines.face.pick import FaceFollower

    group, _ = fh.two_faces()
    faces = detect_faces(group)
    size = (group.shape[1], group.shape[0])
    follower = FaceFollower(FacePick(index=1))
    assert follower.choose(faces, size).centre[0] > 360
    # only the other person found now: no face, rather than the other's figures
    assert follower.choose([f for f in faces if f.centre[0] < 360], size) is None
    assert follower.choose(faces, size).centre[0] > 360
    assert FaceFollower(FacePick(x=0.8, y=0.5)).choose(faces[:1], size) is None  # nothing at that point


def test_a_clip_point_is_found_where_the_layout_puts_it():
    """The picked face's point in the clip frame, carried into the output through a full (cover) or PiP layout:
    the pixel painted there in the clip lands on that output point."""
    import numpy as np

    from pipelines.compose.layout import Placement

    clip = np.zeros((100, 200, 3), np.uint8)
    clip[30, 120] = 255  # the point (0.6025, 0.305) of the clip, at its pixel centre
    point = (120.5 / 200, 30.5 / 100)
    full = Placement("full", (100, 100), None, (0, 0, 100, 100))
    pip = Placement("pip", (400, 300), np.zeros((300, 400, 3), np.uint8), (20, 40, 200, 100))
    for placement in (full, pip):
        out = placement.place(clip)
        x, y = placement.output_point(point, (200, 100))
        w, h = placement.size
        assert out[int(y * h), int(x * w)].max() > 0, placement.mode
