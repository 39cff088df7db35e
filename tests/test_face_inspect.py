import cv2
import numpy as np

from pipelines.face.inspect import MIN_FACE_PX, inspect_source
from tests import face_helpers as fh


def _codes(report):
    return {p.code: p.severity for p in report.problems}


def test_good_portrait_has_no_problems(tmp_path):
    path = tmp_path / "astronaut.png"
    fh.write_image(path, fh.portrait())
    report = inspect_source(path)
    assert report.ok and report.problems == []
    assert report.kind == "image" and (report.width, report.height) == (512, 512)
    assert report.frames_checked == report.frames_with_face == 1
    assert report.face_height >= MIN_FACE_PX and abs(report.yaw) < 8
    assert report.to_dict()["ok"] is True


def test_no_face_is_an_error(tmp_path):
    path = tmp_path / "flat.jpg"
    fh.write_image(path, np.full((200, 300, 3), 90, np.uint8))
    report = inspect_source(path)
    assert not report.ok
    assert _codes(report) == {"no_face": "error"}
    assert "no face found" in report.errors[0].message


def test_several_faces_warn_and_name_the_one_used(tmp_path):
    image, copies = fh.two_faces()
    path = tmp_path / "two.png"
    fh.write_image(path, image)
    report = inspect_source(path)
    assert report.ok
    assert _codes(report) == {"multiple_faces": "warning"}
    assert report.max_faces == 2
    assert report.face_centre[0] < 360  # the larger copy on the left is the persona
    assert "2 faces" in report.warnings[0].message


def test_small_face_warns_with_its_size(tmp_path):
    small = cv2.resize(fh.portrait(), (320, 320), interpolation=cv2.INTER_AREA)  # face ~66 px tall
    path = tmp_path / "small.png"
    fh.write_image(path, small)
    report = inspect_source(path)
    assert report.ok and _codes(report) == {"small_face": "warning"}
    assert f"{report.face_height:.0f} px" in report.warnings[0].message


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    assert _codes(inspect_source(bad)) == {"unreadable": "error"}
    assert _codes(inspect_source(tmp_path / "missing.png")) == {"unreadable": "error"}
    other = tmp_path / "notes.txt"
    other.write_text("hi")
    assert _codes(inspect_source(other)) == {"unreadable": "error"}
    badvid = tmp_path / "broken.mp4"
    badvid.write_bytes(b"\x00" * 100)
    assert _codes(inspect_source(badvid)) == {"unreadable": "error"}


def test_video_samples_frames_and_reports_facefree_ones(tmp_path):
    path = tmp_path / "clip.mp4"
    fh.write_video(path, fh.moving_portrait_frames(n=24, gap=(12, 24)))
    report = inspect_source(path)
    assert report.kind == "video" and report.ok
    assert report.frames_checked == 12 and report.frames_with_face == 6
    assert _codes(report) == {"face_missing_in_frames": "warning"}


def test_video_without_faces_is_an_error(tmp_path):
    path = tmp_path / "empty.mp4"
    fh.write_video(path, [np.full((64, 64, 3), 50, np.uint8)] * 5)
    report = inspect_source(path)
    assert _codes(report) == {"no_face": "error"}
