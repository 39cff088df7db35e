import cv2
import numpy as np
import pytest

from pipelines.face import mesh
from pipelines.face.blend import passthrough_crossfade
from pipelines.face.landmarks import FaceLandmarks
from pipelines.face.track import FaceTrack, _choose, _link, smooth_landmarks, track_faces
from tests import face_helpers as fh


@pytest.fixture(scope="module")
def gap_track():
    # the face slides 2 px/frame; frames 12..17 are empty
    return track_faces(fh.moving_portrait_frames(n=30, gap=(12, 18)))


def test_track_shapes_and_flags(gap_track):
    tr = gap_track
    assert len(tr) == 30 and tr.frame_size == (320, 320)
    assert tr.points.shape == tr.smoothed.shape == (30, 478, 2) and tr.z.shape == (30, 478)
    expected = np.ones(30, bool)
    expected[12:18] = False
    assert np.array_equal(tr.found, expected) and np.array_equal(tr.detected, expected)
    assert tr.n_found == 24


def test_track_follows_the_motion_without_lag(gap_track):
    tr = gap_track
    start = 20 + fh.LEFT_PUPIL[0] - fh.FACE_BOX[0]  # pupil x in frame 0
    truth = start + 2.0 * np.arange(30)
    for arr in (tr.points, tr.smoothed):
        x = arr[tr.found, mesh.LEFT_PUPIL, 0]
        assert np.abs(x - truth[tr.found]).max() < fh.POSITION_TOL
    # a centred filter has no delay: its mean error against the truth is about zero
    err = tr.smoothed[tr.found, mesh.LEFT_PUPIL, 0] - tr.points[tr.found, mesh.LEFT_PUPIL, 0]
    assert abs(err.mean()) < 0.3


def test_gap_frames_pass_through_with_crossfade(gap_track):
    w = passthrough_crossfade(gap_track.found, fade=3)
    assert np.all(w[12:18] == 0) and np.all(w[:8] == 1) and np.all(w[22:] == 1)
    # monotone ramps, no step larger than half the range
    assert np.all(np.diff(w[:13]) <= 0) and np.all(np.diff(w[17:]) >= 0)
    assert np.abs(np.diff(w)).max() < 0.5


def test_crossfade_edge_cases():
    assert np.array_equal(passthrough_crossfade(np.ones(5, bool)), np.ones(5, np.float32))
    assert np.array_equal(passthrough_crossfade(np.zeros(4, bool)), np.zeros(4, np.float32))
    w = passthrough_crossfade(np.array([1, 1, 1, 0, 1, 1, 1], bool), fade=0)
    assert np.array_equal(w, [1, 1, 1, 0, 1, 1, 1])
    assert passthrough_crossfade(np.array([], bool)).shape == (0,)


def test_short_dropout_is_bridged():
    frames = fh.moving_portrait_frames(n=16, gap=(7, 9))  # 2 empty frames
    tr = track_faces(frames, bridge=2)
    assert tr.found.all() and not tr.detected[7:9].any()
    x = tr.points[:, mesh.LEFT_PUPIL, 0]
    assert np.all(np.diff(x) > 0.5)  # interpolated across, still moving right


def test_persona_chosen_by_persistence_not_per_frame_size():
    frames = []
    for i, f in enumerate(fh.moving_portrait_frames(n=16)):
        canvas = np.full((320, 640, 3), 170, np.uint8)
        canvas[:, :320] = f
        if 5 <= i < 9:  # a bigger stranger for four frames
            canvas[20:300, 340:620] = cv2.resize(fh.face_crop(), (280, 280), interpolation=cv2.INTER_CUBIC)
        frames.append(canvas)
    tr = track_faces(frames)
    assert tr.found.all()
    assert tr.points[:, mesh.LEFT_PUPIL, 0].max() < 320  # always the face on the left


def test_no_face_anywhere():
    tr = track_faces([np.full((64, 64, 3), 90, np.uint8)] * 3)
    assert not tr.found.any() and tr.points.shape == (3, 478, 2)


def test_arrays_round_trip(gap_track):
    arrays = gap_track.to_arrays()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    back = FaceTrack.from_arrays(arrays)
    assert back.frame_size == gap_track.frame_size
    for k in ("points", "z", "smoothed", "found", "detected"):
        assert np.array_equal(getattr(back, k), getattr(gap_track, k))
    with pytest.raises(ValueError):
        FaceTrack.from_arrays({**arrays, "smoothed": arrays["smoothed"][:-1]})


def test_smoothing_keeps_a_quadratic_and_removes_noise():
    t = np.arange(40, dtype=np.float64)
    clean = np.stack([0.05 * t**2, 3.0 * t], axis=-1)[:, None, :]  # (n, 1, 2)
    found = np.ones(40, bool)
    out = smooth_landmarks(clean, found, 5)
    assert np.allclose(out[2:-2], clean[2:-2], atol=1e-3)  # exact for a quadratic inside the run
    assert np.allclose(out, clean, atol=0.1)  # the odd extension at the ends keeps slopes, bends slightly
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0, 1.0, clean.shape)
    out = smooth_landmarks(noisy, found, 7)
    assert np.abs(out - clean).std() < 0.8 * np.abs(noisy - clean).std()


def _fake_face(cx: float, cy: float, size: float) -> FaceLandmarks:
    unit = np.random.default_rng(0).uniform(-0.5, 0.5, (478, 2))
    unit[:2] = [[-0.5, -0.5], [0.5, 0.5]]  # pin the box so size is exact
    return FaceLandmarks(points=(unit * size + [cx, cy]).astype(np.float32), z=np.zeros(478, np.float32))


def test_selection_merges_duplicate_reports_and_ignores_strangers():
    # The persona (size 100) drifts right; MediaPipe reports it twice in frames 7..9 (a slightly larger duplicate)
    # and only the duplicate continues after frame 9. A bigger stranger at x=600 shows in frames 12..15.
    per_frame = []
    for t in range(16):
        faces = []
        x = 200 + 3 * t
        if t <= 9:
            faces.append(_fake_face(x, 200, 100))
        if t >= 7:
            faces.append(_fake_face(x + 8, 205, 112))
        if t >= 12:
            faces.append(_fake_face(600, 200, 160))
        per_frame.append(faces)
    chosen = _choose(_link(per_frame), len(per_frame))
    assert all(c is not None for c in chosen)
    assert all(abs(c.centre[0] - (200 + 3 * t)) < 10 for t, c in enumerate(chosen))
