import numpy as np
import pytest

from pipelines.errors import InputError
from pipelines.media.ffmpeg import run_ffmpeg
from pipelines.media.probe import probe
from pipelines.media.video_in import iter_frames, open_source
from tests.media_helpers import frame_level, level_frames, make_video, quadrant_frames


def expected_indices(source_times, fps, n):
    """Reference rule: output frame i shows the last source frame with time < (i + 0.5) / fps."""
    out = []
    for i in range(n):
        k = max(j for j, t in enumerate(source_times) if t < (i + 0.5) / fps or j == 0)
        out.append(k)
    return out


def test_still_image_repeats(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    path = tmp_path / "face photo.png"
    Image.fromarray(rgb).save(path)
    src = open_source(path, fps=25)
    assert src.is_still and len(src) == 1 and (src.width, src.height) == (41, 30)
    frames = list(src.frames(count=4))
    assert len(frames) == 4 and all((f == rgb).all() for f in frames)
    frames[0][:] = 0  # a consumer drawing on one frame must not change the next
    assert (next(src.frames(count=1)) == rgb).all()
    resized = next(open_source(path, fps=25, size=(20, 16)).frames(count=1))
    assert resized.shape == (16, 20, 3)


def test_still_image_exif_orientation(tmp_path):
    from PIL import Image

    rgb = quadrant_frames(1, (40, 30))[0]
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    frame = next(open_source(path, fps=25).frames(count=1))
    assert frame.shape == (40, 30, 3)
    assert frame[5, -5, 0] > 150 and frame[-5, 5, 0] < 100  # red quadrant moved to the top right


def test_ntsc_to_25_by_timestamps(tmp_path):
    n = 60
    # B-frames: decode order differs from presentation order, which is the order that counts
    bframes = ["-c:v", "libx264", "-preset", "medium", "-qp", "0", "-bf", "3", "-pix_fmt", "yuv444p"]
    path = make_video(tmp_path / "ntsc clip.mp4", level_frames(n, (32, 24)), fps="30000/1001", codec=bframes)
    info = probe(path)
    assert abs(info.fps - 29.97) < 0.01
    src = open_source(path, fps=25)
    duration = n * 1001 / 30000
    assert len(src) == round(duration * 25)
    got = [frame_level(f) for f in src]
    times = [k * 1001 / 30000 for k in range(n)]
    assert got == expected_indices(times, 25, len(src))
    assert got == [frame_level(f) for f in src], "a second pass gives the same frames"


def test_25_to_30_duplicates_frames(tmp_path):
    path = make_video(tmp_path / "pal.mp4", level_frames(25, (32, 24)), fps="25")
    src = open_source(path, fps=30)
    assert len(src) == 30
    got = [frame_level(f) for f in src]
    assert got == expected_indices([k / 25 for k in range(25)], 30, 30)


def test_variable_frame_rate(tmp_path):
    n = 30
    # intervals alternate 30 ms and 90 ms: pts = 0, 0.03, 0.12, 0.15, 0.24, ...
    path = make_video(
        tmp_path / "vfr.mkv",
        level_frames(n, (32, 24)),
        fps="25",
        setpts="(floor(N/2)*0.12+(N-2*floor(N/2))*0.03)/TB",
    )
    times = [(k // 2) * 0.12 + (k % 2) * 0.03 for k in range(n)]
    src = open_source(path, fps=25)
    got = [frame_level(f) for f in src]
    assert got == expected_indices(times, 25, len(src))
    assert abs(len(src) - round((times[-1] + 0.1) * 25)) <= 1
    # by index it would be 0, 1, 2, ...: here frames are skipped and held
    assert got[:6] == [0, 1, 1, 2, 3, 3]


def test_resume_from_middle_matches_full_pass(tmp_path):
    path = make_video(tmp_path / "clip.mp4", level_frames(40, (32, 24)), fps="30000/1001")
    src = open_source(path, fps=25)
    full = [frame_level(f) for f in src]
    assert [frame_level(f) for f in src.frames(start=10, count=5)] == full[10:15]


def test_rotation_metadata_applied(tmp_path):
    frames = quadrant_frames(5, (64, 48))
    path = make_video(tmp_path / "phone clip.mp4", frames, rotation=90)
    info = probe(path)
    assert info.rotation == 90 and (info.width, info.height) == (48, 64)
    assert (info.coded_width, info.coded_height) == (64, 48)
    src = open_source(path, fps=25)
    first = next(iter(src))
    assert first.shape == (64, 48, 3) and (src.width, src.height) == (48, 64)
    # the ffmpeg binary auto-rotates on decode: it is the reference for which way round
    ref = run_ffmpeg(
        ["-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        capture_stdout=True,
    ).stdout
    ref = np.frombuffer(ref, np.uint8).reshape(64, 48, 3)
    assert np.abs(first.astype(int) - ref.astype(int)).max() <= 3
    resized = next(open_source(path, fps=25, size=(24, 32)).frames(count=1))
    assert resized.shape == (32, 24, 3)
    assert next(iter_frames(path)).shape == (64, 48, 3)


def test_odd_size_video(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (3, 47, 63, 3), dtype=np.uint8)
    path = make_video(tmp_path / "odd.mkv", rgb, codec=["-c:v", "ffv1"])
    src = open_source(path, fps=25)
    frames = list(src)
    assert len(frames) == 3 and frames[0].shape == (47, 63, 3)
    # ffv1 is lossless: exact pixels back
    assert all((a == b).all() for a, b in zip(frames, rgb, strict=True))


def test_bad_sources_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="missing.mp4: video file 'missing.mp4' not found"):
        open_source(tmp_path / "missing.mp4", fps=25)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 500)
    with pytest.raises(InputError, match="junk.mp4: 'junk.mp4' is not a readable video"):
        open_source(junk, fps=25)
    bad_img = tmp_path / "bad.png"
    bad_img.write_bytes(b"not a png")
    with pytest.raises(InputError, match="bad.png: 'bad.png' is not a readable image"):
        open_source(bad_img, fps=25)
    audio_only = tmp_path / "voice.m4a"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=d=0.2", "-c:a", "aac", "-y", str(audio_only)])
    with pytest.raises(InputError, match="voice.m4a: 'voice.m4a' has no video stream"):
        open_source(audio_only, fps=25)


def test_real_clip_when_present(shared_dir):
    clips = sorted((shared_dir / "data" / "clips").glob("*.mp4"))
    if not clips:
        pytest.skip("no real clips in ../shared")
    info = probe(clips[0])
    src = open_source(clips[0], fps=30, size=(288, 512))
    assert len(src) == round(info.video_duration * 30)
    frames = list(src.frames(count=3))
    assert len(frames) == 3 and frames[0].shape == (512, 288, 3)
