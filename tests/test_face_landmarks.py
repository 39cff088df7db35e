import numpy as np
import pytest
import skimage.data

from pipelines.face import mesh
from pipelines.face.landmarks import LandmarkDetector, detect_faces, yaw_degrees
from tests import face_helpers as fh


def _dist(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


@pytest.fixture(scope="module")
def astronaut_face():
    faces = detect_faces(fh.portrait())
    assert len(faces) == 1
    return faces[0]


def test_astronaut_features_where_seen_by_eye(astronaut_face):
    p = astronaut_face.points
    assert p.shape == (478, 2) and p.dtype == np.float32
    assert astronaut_face.z.shape == (478,)
    assert _dist(p[mesh.LEFT_PUPIL], fh.LEFT_PUPIL) < fh.POSITION_TOL
    assert _dist(p[mesh.RIGHT_PUPIL], fh.RIGHT_PUPIL) < fh.POSITION_TOL
    assert _dist(mesh.centre(p, mesh.LIPS_INNER), fh.MOUTH_CENTRE) < fh.POSITION_TOL
    assert _dist(p[mesh.CHIN], fh.CHIN) < fh.POSITION_TOL


def test_named_groups_sit_on_the_expected_side(astronaut_face):
    p = astronaut_face.points
    # image-left features have smaller x than their image-right mirror
    for left, right in mesh.SYMMETRIC_PAIRS:
        assert p[left, 0] < p[right, 0]
    assert mesh.centre(p, mesh.LEFT_BROW)[0] < mesh.centre(p, mesh.RIGHT_BROW)[0]
    # vertical order: brows above eyes above nose tip above mouth above chin
    eyes_y = mesh.centre(p, mesh.LEFT_EYE)[1]
    assert mesh.centre(p, mesh.LEFT_BROW)[1] < eyes_y < p[mesh.NOSE_TIP, 1]
    assert p[mesh.NOSE_TIP, 1] < mesh.centre(p, mesh.LIPS_OUTER)[1] < p[mesh.CHIN, 1]
    # the inner lip ring lies inside the outer one
    lo, li = np.array(mesh.LIPS_OUTER), np.array(mesh.LIPS_INNER)
    assert np.ptp(p[li, 0]) < np.ptp(p[lo, 0]) and np.ptp(p[li, 1]) < np.ptp(p[lo, 1])
    assert len(set(mesh.FACE_OVAL)) == 36 and set(mesh.JAW) <= set(mesh.FACE_OVAL)


def test_bbox_and_size(astronaut_face):
    x0, y0, x1, y1 = astronaut_face.bbox
    assert x0 < fh.LEFT_PUPIL[0] < fh.RIGHT_PUPIL[0] < x1 and y0 < fh.LEFT_PUPIL[1] < fh.CHIN[1] <= y1 + 1
    assert 80 < astronaut_face.size < 120


def test_frontal_portrait_has_small_yaw_and_rotation_is_measured(astronaut_face):
    assert abs(astronaut_face.yaw) < 8
    pts = np.c_[astronaut_face.points, astronaut_face.z].astype(np.float64)
    c = pts.mean(axis=0)
    for deg in (25.0, 50.0):
        a = np.radians(deg)
        rot = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
        q = (pts - c) @ rot.T + c
        assert yaw_degrees(q[:, :2], q[:, 2]) == pytest.approx(deg + astronaut_face.yaw, abs=3)


def test_no_face_in_facefree_images():
    assert detect_faces(skimage.data.coffee()) == []
    assert detect_faces(np.full((300, 400, 3), 128, np.uint8)) == []


def test_two_faces_found_largest_first():
    image, copies = fh.two_faces()
    faces = detect_faces(image)
    assert len(faces) == 2
    assert faces[0].size > faces[1].size * 1.4
    for face, (x, y, _scale) in zip(faces, copies, strict=True):
        assert _dist(face.points[mesh.LEFT_PUPIL], (x, y)) < fh.POSITION_TOL
    assert len(detect_faces(image, max_faces=1)) == 1


def test_small_face_in_large_frame_is_found():
    import cv2

    canvas = np.full((1080, 1920, 3), 120, np.uint8)
    canvas[600:760, 1500:1660] = cv2.resize(fh.face_crop(), (160, 160), interpolation=cv2.INTER_AREA)
    faces = detect_faces(canvas)
    assert len(faces) == 1
    x = 1500 + (fh.LEFT_PUPIL[0] - fh.FACE_BOX[0]) * 160 / 240
    y = 600 + (fh.LEFT_PUPIL[1] - fh.FACE_BOX[1]) * 160 / 240
    assert _dist(faces[0].points[mesh.LEFT_PUPIL], (x, y)) < fh.POSITION_TOL


def test_refit_on_a_crop_keeps_the_features_and_falls_back_to_the_face_given():
    import cv2

    canvas = np.full((1920, 1080, 3), 120, np.uint8)
    canvas[500:700, 440:640] = cv2.resize(fh.face_crop(), (200, 200), interpolation=cv2.INTER_AREA)
    s = 200 / 240
    chin = (440 + (fh.CHIN[0] - fh.FACE_BOX[0]) * s, 500 + (fh.CHIN[1] - fh.FACE_BOX[1]) * s)
    pupil = (440 + (fh.LEFT_PUPIL[0] - fh.FACE_BOX[0]) * s, 500 + (fh.LEFT_PUPIL[1] - fh.FACE_BOX[1]) * s)
    with LandmarkDetector("image") as det:
        face = det.detect(canvas)[0]
        fitted = det.refit(canvas, face)
        assert fitted is not face
        assert _dist(fitted.points[mesh.CHIN], chin) < fh.POSITION_TOL
        assert _dist(fitted.points[mesh.LEFT_PUPIL], pupil) < fh.POSITION_TOL
        assert det.refit(np.zeros_like(canvas), face) is face  # no face in the crop: the one given
    with LandmarkDetector("video") as det, pytest.raises(RuntimeError):
        det.refit(canvas, face)


def test_video_mode_tracks_across_frames():
    frames = fh.moving_portrait_frames(n=6)
    with LandmarkDetector("video") as det:
        xs = [det.detect(f)[0].points[mesh.LEFT_PUPIL, 0] for f in frames]
    assert np.allclose(np.diff(xs), 2.0, atol=1.0)


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError):
        detect_faces(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        detect_faces(np.zeros((10, 10, 3), np.float32))
