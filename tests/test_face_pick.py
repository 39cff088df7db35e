"""The persona's `face` pick, followed by every engine that looks for the persona's face (photo and video).

The group photo: skimage's astronaut portrait twice on one canvas, a large copy on the left and a smaller one on
the right (tests.face_helpers.two_faces); the pick selects the smaller one, which no engine takes by itself.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from pipelines.cache import DiskArrayCache
from pipelines.engines.base import RenderSettings
from pipelines.errors import InputError
from pipelines.face.pick import persona_face
from pipelines.spec.persona import FacePick
from tests import face_helpers as fh

RIGHT = FacePick(index=1)  # the smaller face, on the right half of the canvas
BY_POINT = FacePick(x=0.77, y=0.5)


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    import imageio.v3 as iio

    image, _ = fh.two_faces()
    path = tmp_path_factory.mktemp("group") / "group.png"
    iio.imwrite(path, image)
    return path, image


def _side(x: float, width: float) -> str:
    return "right" if x > width / 2 else "left"


def _persona(path, pick, **kw):
    return SimpleNamespace(source=path, face=pick, looks={}, emotions={}, **kw)


def _settings(name="preview", size=None, fps=25):
    from pipelines.spec.engines import engine_settings

    return RenderSettings(fps=fps, size=size, seed=1, engine=engine_settings({"name": name}))


def test_the_shared_pick_finds_the_named_face_or_says_it_is_not_there(group):
    path, image = group
    width = image.shape[1]
    assert _side(persona_face(image, None, path).centre[0], width) == "left"  # the largest by default
    assert _side(persona_face(image, RIGHT, path).centre[0], width) == "right"
    assert _side(persona_face(image, BY_POINT, path).centre[0], width) == "right"
    with pytest.raises(InputError) as err:
        persona_face(image, FacePick(index=2), path)
    assert err.value.field == "face" and "shows 2 face(s)" in err.value.message
    assert persona_face(np.full((64, 64, 3), 128, np.uint8), RIGHT, path) is None


def _two_people_frames(n=12):
    """Both copies of the face sliding right together, 3 px per frame."""
    import cv2

    image, _ = fh.two_faces()
    return [
        cv2.warpAffine(
            image, np.float32([[1, 0, 3 * i], [0, 1, 0]]), image.shape[1::-1], borderValue=(180,) * 3
        )
        for i in range(n)
    ]


def test_a_video_track_follows_the_picked_person_through_the_footage():
    from pipelines.face.track import track_faces

    frames = _two_people_frames()
    width = frames[0].shape[1]
    default = track_faces(iter(frames))
    picked = track_faces(iter(frames), pick=RIGHT)
    assert default.found.all() and picked.found.all()
    assert {_side(x, width) for x in default.points.mean(axis=1)[:, 0]} == {"left"}
    centres = picked.points.mean(axis=1)
    assert {_side(x, width) for x in centres[:, 0]} == {"right"}
    assert np.allclose(np.diff(centres[:, 0]), 3.0, atol=1.5)  # it moves with that person


def test_preview_and_musetalk_photo_follow_the_pick(group, tmp_path):
    """The preview engine frames the picked face; MuseTalk finds its mesh on that face of each preview frame,
    even where another face is in the picture."""
    from pipelines.engines.musetalk.engine import MuseTalkEngine, _ChunkSource
    from pipelines.engines.preview.engine import PreviewEngine

    path, image = group
    cache = DiskArrayCache(tmp_path / "cache")
    prepared = PreviewEngine().prepare(_persona(path, RIGHT), _settings(size=(256, 256)), cache)
    framed = persona_face(prepared.frame, None, path)
    small = persona_face(image, RIGHT, path)
    assert framed.size > 1.3 * small.size  # the small face, scaled up to fill the frame
    # MuseTalk's mesh of a frame where both faces show: the one the persona's prepared face sits on
    engine = MuseTalkEngine(components={}, device="cpu")
    for pick, side in ((RIGHT, "right"), (None, "left")):
        prep = PreviewEngine().prepare(_persona(path, pick), _settings(size=(256, 256)), cache)
        on_canvas = persona_face(image, pick, path).points
        prep.points = on_canvas[None] + prep.margin  # as if the preview had framed the whole group
        source = _ChunkSource(engine, prep, (f for f in ()), None, None, 1, 1)
        points, weight = source._mesh(0, image, True)
        source.close()
        assert weight == 1.0 and _side(points.mean(axis=0)[0], image.shape[1]) == side


def test_latentsync_follows_the_pick_in_a_photo_and_a_video(group, tmp_path):
    from pipelines.engines.latentsync.engine import LatentSyncEngine

    path, image = group
    engine = LatentSyncEngine("latentsync-1.6", components={}, device="cpu", resolution=64)
    cache = DiskArrayCache(tmp_path / "cache")
    for pick, side in ((None, "left"), (RIGHT, "right"), (BY_POINT, "right")):
        clip = engine.prepare(_persona(path, pick), _settings("latentsync-1.6"), cache).clips[""]
        assert _side(clip.points[0].mean(axis=0)[0], clip.size[0]) == side
    video = tmp_path / "two.mp4"
    fh.write_video(video, _two_people_frames(6))
    clip = engine.prepare(_persona(video, RIGHT), _settings("latentsync-1.6"), cache).clips[""]
    assert clip.found.all()
    assert {_side(x, 720) for x in clip.points.mean(axis=1)[:, 0]} == {"right"}
    with pytest.raises(InputError, match="face.index 3"):
        engine.prepare(_persona(video, FacePick(index=3)), _settings("latentsync-1.6"), cache)


def test_echomimic_v3_face_region_is_the_picked_face(group, tmp_path):
    from pipelines.engines.echomimic_v3.engine import EchoMimicV3Engine

    path, _ = group
    engine = EchoMimicV3Engine("echomimic-v3-preview", components={}, device="cpu", prompt_cache_dir=tmp_path)
    cache = DiskArrayCache(tmp_path / "cache")
    for pick, side in ((None, "left"), (RIGHT, "right")):
        prepared = engine.prepare(_persona(path, pick), _settings("echomimic-v3-preview"), cache)
        x0, y0, x1, y1 = prepared.box
        assert _side((x0 + x1) / 2, prepared.image.shape[1]) == side
        assert x1 - x0 < prepared.image.shape[1] / 2  # one face, not a box around both


def test_echomimic_v2_frames_the_picked_person(tmp_path):
    """Two astronauts (half-length) side by side: the crop and the body are the picked one's (by default the
    larger one's, as in every engine, where BlazePose alone takes the smaller one)."""
    import cv2
    import imageio.v3 as iio
    from skimage.data import astronaut

    from pipelines.engines.echomimic_v2.engine import EchoMimicV2Engine

    canvas = np.full((512, 1024, 3), 200, np.uint8)
    canvas[:, :512] = astronaut()
    canvas[64:, 576:1024] = cv2.resize(astronaut(), (448, 448), interpolation=cv2.INTER_AREA)[:, ::-1]
    path = tmp_path / "pair.png"
    iio.imwrite(path, canvas)
    engine = EchoMimicV2Engine("echomimic-v2-acc", components={}, device="cpu", resolution=64)
    cache = DiskArrayCache(tmp_path / "cache")
    settings = _settings("echomimic-v2-acc", size=(256, 256))
    for pick, side in ((None, "left"), (FacePick(index=1), "right")):
        prepared = engine.prepare(_persona(path, pick, poses=None), settings, cache)
        # the framed picture (a 512 px square of the canvas) is that astronaut's half
        left = np.asarray(canvas[:, :512], float)
        right = np.asarray(canvas[:, 512:], float)
        small = cv2.resize(prepared.image, (512, 512), interpolation=cv2.INTER_AREA).astype(float)
        nearer = "left" if np.abs(small - left).mean() < np.abs(small - right).mean() else "right"
        assert nearer == side
        if prepared.body is not None:
            assert 0.25 < prepared.body.anchor[0] < 0.75  # shoulders seen inside this person's crop
        # QC is told where that person's face is in the framed picture (the crop's largest face is theirs)
        from pipelines.face.landmarks import detect_faces

        fx, fy = engine.face_point(prepared)
        h, w = prepared.image.shape[:2]
        x0, y0, x1, y1 = detect_faces(prepared.image)[0].bbox
        assert x0 <= fx * w <= x1 and y0 <= fy * h <= y1


def test_validate_checks_a_video_pick_on_its_first_frame_with_a_face(tmp_path):
    from cli.validate import _face_pick_problem

    video = tmp_path / "two.mp4"
    fh.write_video(video, [np.full((360, 720, 3), 180, np.uint8)] * 2 + _two_people_frames(3))
    assert _face_pick_problem(video, RIGHT) is None
    assert "shows 2 face(s)" in _face_pick_problem(video, FacePick(index=2))
