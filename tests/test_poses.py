import pickle

import numpy as np
import pytest
from pose_helpers import hand_image, wave_track
from typer.testing import CliRunner

from cli.main import app
from pipelines.errors import InputError
from pipelines.poses.draw import draw_hands
from pipelines.poses.extract import Body, photo_landmarks
from pipelines.poses.rest import rest_poses
from pipelines.poses.track import HandPoses
from pipelines.poses.upstream import import_pose_folder, read_npy
from tests.face_helpers import write_video
from tests.project_helpers import make_project


def test_a_drawn_hand_is_found_with_21_points_on_it():
    image = hand_image(256)
    body, points, scores = photo_landmarks(image)
    assert body is None  # no person in the picture
    seen = scores.max(axis=1) > 0
    assert seen.sum() == 1
    hand = points[seen][0] * 256
    skin = np.abs(image.astype(int) - (230, 180, 150)).sum(axis=2) < 60
    ys, xs = np.nonzero(skin)
    assert xs.min() - 10 <= hand[:, 0].min() and hand[:, 0].max() <= xs.max() + 10
    assert ys.min() - 10 <= hand[:, 1].min() and hand[:, 1].max() <= ys.max() + 10
    tips = hand[[8, 12, 16, 20]]
    assert (tips[:, 1] < hand[0, 1] - 60).all()  # fingertips well above the wrist: the hand points up


def test_personas_poses_from_a_video_writes_plain_arrays_and_names_them(tmp_path, monkeypatch):
    make_project(tmp_path, {})
    monkeypatch.chdir(tmp_path)
    clip = tmp_path / "wave.mp4"
    write_video(clip, [hand_image(256, dx=0.1 * np.sin(i / 3)) for i in range(10)], fps=10)
    result = CliRunner().invoke(app, ["personas", "poses", "test", "--from", str(clip), "--json"])
    assert result.exit_code == 0, result.output
    assert '"frames": 10' in result.stdout
    persona_dir = tmp_path / "personas" / "test"
    assert "poses: poses.npz" in (persona_dir / "persona.yaml").read_text()
    with np.load(persona_dir / "poses.npz", allow_pickle=False) as z:
        assert z["points"].shape == (10, 2, 21, 2) and z["points"].dtype == np.float32
    poses = HandPoses.load(persona_dir / "poses.npz")
    assert poses.fps == 10 and (poses.scores.max(axis=(1, 2)) > 0).mean() >= 0.8
    wrist_x = [
        p[s, 0, 0] for p, sc in zip(poses.points, poses.scores, strict=True) for s in (0, 1) if sc[s, 0] > 0
    ]
    assert max(wrist_x) - min(wrist_x) > 0.05  # it followed the hand (moved by 0.1 of the width)
    # the persona validates with its poses, and a second run replaces the file without a second yaml line
    assert CliRunner().invoke(app, ["personas", "poses", "test", "--from", str(clip)]).exit_code == 0
    assert (persona_dir / "persona.yaml").read_text().count("poses:") == 1


def test_personas_poses_needs_exactly_one_source(tmp_path, monkeypatch):
    make_project(tmp_path, {})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["personas", "poses", "test"])
    assert result.exit_code == 2 and "exactly one of --from VIDEO or --upstream FOLDER" in result.output


def _upstream_frame(path, hands, with_body=True):
    body = {
        "candidate": np.array(
            [[0.5, 0.2], [0.5, 0.5], [0.3, 0.5], [0.2, 0.8], [0.3, 0.9], [0.7, 0.5]] + [[0, 0]] * 12
        ),
        "subset": np.arange(18, dtype=float)[None],
        "score": np.ones((1, 18)),
    }
    d = {"bodies": body if with_body else {}, "hands": hands, "hands_score": np.ones((2, 21)) * 1.02,
         "faces": np.zeros((1, 68, 2)), "faces_score": np.zeros((1, 68)), "num": 1,
         "draw_pose_params": [768, 768, 0, 768, 0, 768]}  # fmt: skip
    np.save(path, d, allow_pickle=True)  # exactly how upstream's pose folders were written


def test_upstream_pose_folder_imports_as_plain_arrays(tmp_path):
    for i in range(3):
        _upstream_frame(tmp_path / f"{i}.npy", np.full((2, 21, 2), 0.5 + 0.01 * i))
    (tmp_path / "notes.npy").write_bytes(b"ignored: not a frame number")
    poses = import_pose_folder(tmp_path)
    assert len(poses) == 3 and poses.fps == 24 and poses.aspect == 1.0
    assert np.allclose(poses.points[2], 0.52) and float(poses.scores.max()) == 1.0
    assert np.allclose(poses.anchor, [0.5, 0.5, 0.4])


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_upstream_import_refuses_pickled_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arr = np.empty((), dtype=object)
    arr[()] = {"hands": _Payload()}
    np.save(tmp_path / "0.npy", arr, allow_pickle=True)
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        read_npy(tmp_path / "0.npy")
    with pytest.raises(InputError, match="not a plain-array pose file"):
        import_pose_folder(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_pose_file_is_plain_npz_and_bad_files_get_one_line_errors(tmp_path):
    track = wave_track()
    track.save(tmp_path / "p.npz")
    back = HandPoses.load(tmp_path / "p.npz")
    assert np.array_equal(back.points, track.points) and back.fps == track.fps
    pickled = tmp_path / "bad.npz"
    np.savez(pickled, points=np.array([object()], dtype=object))
    with pytest.raises(InputError, match="plain arrays"):
        HandPoses.load(pickled)
    np.savez(
        tmp_path / "short.npz", points=np.zeros((3, 2, 5, 2)), scores=np.zeros((3, 2, 5)), fps=24, aspect=1
    )
    with pytest.raises(InputError, match=r"points \(N, 2, 21, 2\)"):
        HandPoses.load(tmp_path / "short.npz")
    with pytest.raises(InputError, match="file not found"):
        HandPoses.load(tmp_path / "none.npz")


def test_alignment_maps_the_recorded_body_onto_the_persona():
    track = wave_track()  # anchor (0.5, 0.45), shoulders 0.4 wide, square frame
    moved = track.aligned(np.array([0.3, 0.5, 0.2]), aspect=0.5)  # persona: smaller, left, in a tall frame
    src = track.points[0, 0, 0]
    want_x = 0.3 + (src[0] - 0.5) * 0.5
    want_y = (0.5 / 0.5 + (src[1] - 0.45) * 0.5) * 0.5  # in width units, then back to fractions of the height
    assert np.allclose(moved.points[0, 0, 0], [want_x, want_y], atol=1e-6)
    assert np.array_equal(track.aligned(None, 1.0).points, track.points)


def test_looping_is_seamless_for_any_length():
    track = wave_track(n=40)
    jump = np.abs(np.diff(track.points, axis=0)).max()
    for n in (10, 40, 41, 200):
        looped = track.looped(n, fade=8)
        assert len(looped) == n
        assert np.abs(np.diff(looped.points, axis=0)).max() <= 3 * jump + 1e-6
    short = wave_track(n=3).looped(11, fade=8)  # too short to fade: ping-pong 0 1 2 1 0 1 2 ...
    assert np.array_equal(
        short.points[:, 0, 0, 0], wave_track(n=3).points[[0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2], 0, 0, 0]
    )


def _body():
    return Body(
        shoulders=np.array([[0.7, 0.45], [0.3, 0.45]], np.float32),
        elbows=np.array([[0.78, 0.75], [0.22, 0.75]], np.float32),
        wrists=np.array([[0.75, 0.95], [0.25, 0.95]], np.float32),
        visibility=np.ones((3, 2), np.float32),
        aspect=1.0,
    )


def test_rest_poses_stay_in_frame_move_smoothly_and_follow_the_seed():
    none = np.zeros((2, 21, 2), np.float32), np.zeros((2, 21), np.float32)
    a = rest_poses(240, 24.0, 1, _body(), *none, aspect=1.0)
    assert a.points.shape == (240, 2, 21, 2) and (a.scores == 1).all()
    assert a.points.min() >= 0 and a.points.max() <= 1
    step = np.abs(np.diff(a.points, axis=0)).max()
    assert 0 < step < 0.004  # moving, but by less than 0.4 % of the frame per frame
    wrists = a.points[:, :, 0]
    assert np.abs(wrists - _body().wrists[None]).max() < 0.05  # resting at the photo's wrists
    assert np.array_equal(rest_poses(240, 24.0, 1, _body(), *none, aspect=1.0).points, a.points)
    assert not np.array_equal(rest_poses(240, 24.0, 2, _body(), *none, aspect=1.0).points, a.points)
    # a hand found in the photo is the starting pose as it is
    photo = np.zeros((2, 21, 2), np.float32)
    photo[1] = np.linspace([0.2, 0.7], [0.3, 0.6], 21)
    scores = np.zeros((2, 21), np.float32)
    scores[1] = 1
    b = rest_poses(10, 24.0, 1, None, photo, scores, aspect=1.0)
    assert (b.scores[:, 0] == 0).all() and np.abs(b.points[:, 1] - photo[1]).max() < 0.03


def test_drawn_pose_images_put_red_keypoints_on_black():
    track = wave_track()
    image = draw_hands(track.points[0], track.scores[0], 1024, 768)
    assert image.shape == (768, 1024, 3) and image.dtype == np.uint8
    x, y = track.points[0, 0, 20]
    r, g, b = image[int(y * 768), int(x * 1024)]
    assert r > 150 and g < 60 and b < 60
    assert image[:5].max() == 0  # nothing drawn far from the hands
    assert draw_hands(track.points[0], track.scores[0] * 0, 1024, 768).max() == 0  # unseen: only black


def test_personas_poses_imports_an_upstream_folder_and_the_file_joins_the_content_hash(tmp_path, monkeypatch):
    from pipelines.spec.loader import load_batch

    jobs = make_project(tmp_path, {"a": "kind: summary\npersona: test\naudio: {text: Hi., voice: en}\n"})
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "upstream_pose"
    folder.mkdir()
    for i in range(4):
        _upstream_frame(folder / f"{i}.npy", np.full((2, 21, 2), 0.5))
    result = CliRunner().invoke(app, ["personas", "poses", "test", "--upstream", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert '"frames": 4' in result.stdout and '"body_anchor": true' in result.stdout
    (job,) = load_batch([jobs / "a.yaml"]).jobs
    assert (tmp_path / "personas" / "test" / "poses.npz").resolve() in {
        p.resolve() for p in job.input_files()
    }


def test_expressive_moments_liven_the_rest_poses_smoothly():
    from pipelines.expression.track import PARAMS
    from pipelines.poses.rest import emphasis_from_expression

    n, fps = 240, 24.0
    values = np.zeros((n, len(PARAMS)), np.float32)
    values[120:, PARAMS.index("smile")] = 0.8
    values[:, PARAMS.index("blink")] = 1.0  # blinks and head idle do not count
    emphasis = emphasis_from_expression(values, PARAMS, fps)
    assert emphasis[:100].max() == 0 and emphasis[140:].min() == pytest.approx(0.8)
    assert np.abs(np.diff(emphasis)).max() <= 0.8 / 12 + 1e-6  # ramps over half a second
    none = np.zeros((2, 21, 2), np.float32), np.zeros((2, 21), np.float32)
    calm = rest_poses(n, fps, 1, _body(), *none, aspect=1.0)
    lively = rest_poses(n, fps, 1, _body(), *none, aspect=1.0, emphasis=emphasis)
    assert np.array_equal(calm.points[:100], lively.points[:100])
    assert (lively.points[150:, :, 0, 1] < calm.points[150:, :, 0, 1] - 0.02).all()  # hands lifted
    sway = lambda p: np.ptp(p.points[150:, :, 0], axis=0).max()  # noqa: E731
    assert sway(lively) > 1.5 * sway(calm)
    assert lively.points.min() >= 0 and np.abs(np.diff(lively.points, axis=0)).max() < 0.01
