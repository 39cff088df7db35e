import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.errors import InputError, RenderError
from pipelines.media.atomic import temp_path_for
from pipelines.media.ffmpeg import run_ffmpeg
from pipelines.media.probe import is_faststart, probe
from pipelines.media.video_in import iter_frames
from pipelines.media.video_out import (
    AudioTrack,
    SegmentWriter,
    completed_frames,
    completed_segments,
    encode_final,
    mux_segments,
)

SIZE = (48, 32)
REPO = Path(__file__).resolve().parents[1]


def frame(i: int, size=SIZE) -> np.ndarray:
    """Frame i: a smooth gradient moving with i, plus mild noise seeded by i (easy to regenerate)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(4 * x + 3 * i) % 256, (4 * y + 5 * i) % 256, np.full_like(x, 40 + 9 * i)], -1)
    noise = np.random.default_rng(i).integers(-3, 4, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def decoded_audio_samples(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(audio=0))


def make_wav(path: Path, seconds: float) -> Path:
    noise = f"anoisesrc=sample_rate=48000:amplitude=0.3:seed=3:d={seconds}"
    run_ffmpeg(["-f", "lavfi", "-i", noise, "-c:a", "pcm_s16le", "-y", str(path)])
    return path


def segment_frames(work: Path) -> list[np.ndarray]:
    """Every frame of the finished segments, decoded, in order."""
    return [f for _, _, path in completed_segments(work) for f in iter_frames(path)]


def test_segments_are_complete_and_join_into_one_video(tmp_path):
    work = tmp_path / "work dir"
    with SegmentWriter(work, fps=25, size=SIZE, preset="ultrafast", segment_frames=4) as writer:
        assert writer.start == 0
        for i in range(10):
            writer.write(frame(i))
    names = sorted(p.name for p in work.iterdir())
    assert names == [
        "segment_00000000_000004.mp4",
        "segment_00000004_000004.mp4",
        "segment_00000008_000002.mp4",
    ]
    assert completed_frames(work) == 10
    assert [probe(p).video_frames for _, _, p in completed_segments(work)] == [4, 4, 2]
    audio = AudioTrack(make_wav(tmp_path / "a.wav", 0.4), 10, 25, tmp_path)
    out = mux_segments(work, 10, 25, audio.finish(), tmp_path / "joined.mp4")
    joined = list(iter_frames(out))
    assert len(joined) == 10
    assert all(np.array_equal(a, b) for a, b in zip(joined, segment_frames(work), strict=True))
    assert np.abs(joined[7].astype(int) - frame(7)).mean() < 4  # H.264 at CRF 18: close to what went in


@pytest.mark.parametrize("total", [6, 8])
def test_with_a_total_each_encoder_starts_a_segment_ahead_and_none_is_left(tmp_path, total):
    with SegmentWriter(tmp_path, fps=25, size=SIZE, preset="ultrafast", segment_frames=4, total=total) as w:
        first = w._ahead  # the first segment's ffmpeg, started before any frame
        assert first is not None and first.first == 0 and first.pipe.proc.poll() is None
        w.write(frame(0))
        second = w._ahead  # and the second's, waiting for frame 4
        assert second is not None and second.first == 4 and second.pipe.proc.poll() is None
        for i in range(1, total):
            w.write(frame(i))
        assert w._ahead is None  # nothing after the last segment
    assert first.pipe.proc.poll() == 0 and second.pipe.proc.poll() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "segment_00000000_000004.mp4",
        f"segment_00000004_{total - 4:06d}.mp4",
    ]


def test_an_encoder_started_ahead_is_dropped_when_the_render_fails(tmp_path):
    with (
        pytest.raises(RuntimeError),
        SegmentWriter(tmp_path, fps=25, size=SIZE, preset="ultrafast", segment_frames=4, total=12) as writer,
    ):
        for i in range(5):
            writer.write(frame(i))
        ahead = writer._ahead
        assert ahead is not None and ahead.first == 8
        raise RuntimeError("engine failed")
    assert ahead.pipe.proc.poll() is not None  # killed and reaped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segment_00000000_000004.mp4"]


def test_mux_refuses_missing_frames(tmp_path):
    with SegmentWriter(tmp_path / "w", fps=25, size=SIZE, preset="ultrafast", segment_frames=4) as writer:
        for i in range(4):
            writer.write(frame(i))
    with pytest.raises(RenderError, match="the segments hold 4 frames, expected 6"):
        mux_segments(
            tmp_path / "w",
            6,
            25,
            AudioTrack(make_wav(tmp_path / "a.wav", 0.4), 6, 25, tmp_path).finish(),
            tmp_path / "x.mp4",
        )


def test_wrong_frame_shape_is_rejected(tmp_path):
    with (
        SegmentWriter(tmp_path, fps=25, size=SIZE) as writer,
        pytest.raises(ValueError, match="frame 0: expected"),
    ):
        writer.write(np.zeros((10, 10, 3), np.uint8))


def test_abandoned_writer_keeps_full_segments_only(tmp_path):
    writer = SegmentWriter(tmp_path, fps=25, size=SIZE, preset="ultrafast", segment_frames=4)
    for i in range(6):
        writer.write(frame(i))
    writer.abandon()
    assert completed_frames(tmp_path) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segment_00000000_000004.mp4"]


def test_exception_inside_block_discards_partial_segment(tmp_path):
    with (
        pytest.raises(RuntimeError),
        SegmentWriter(tmp_path, fps=25, size=SIZE, preset="ultrafast", segment_frames=4) as writer,
    ):
        for i in range(7):
            writer.write(frame(i))
        raise RuntimeError("engine failed")
    assert completed_frames(tmp_path) == 4


def test_commit_hook_runs_before_each_segment_lands(tmp_path):
    seen = []
    with SegmentWriter(
        tmp_path,
        fps=25,
        size=SIZE,
        preset="ultrafast",
        segment_frames=4,
        before_commit=lambda end: seen.append((end, completed_frames(tmp_path))),
    ) as writer:
        for i in range(9):
            writer.write(frame(i))
    assert seen == [(4, 0), (8, 4), (9, 8)]


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pipelines.media.video_out import SegmentWriter, completed_frames
    from tests.test_media_video_out import frame
    work, size, seg, stop = sys.argv[1], (48, 32), 4, int(sys.argv[2])
    writer = SegmentWriter(work, fps=25, size=size, preset="ultrafast", segment_frames=seg)
    for i in range(writer.start, stop):
        writer.write(frame(i))
    # a full segment lands once its encoder exits; ffmpeg opens its output only once it has seen input:
    # wait for both, then hang mid-segment
    while completed_frames(work) < stop // seg * seg or not list(Path(work).glob(".segment_*.part.mp4")):
        time.sleep(0.01)
        writer.poll()
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_sigkill_mid_segment_then_resume_gives_identical_video(tmp_path):
    n = 17
    work = tmp_path / "killed run"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(work), "10"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"  # 2 segments done, 2 frames into the third
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert completed_frames(work) == 8
    assert all(p.name.startswith("segment_") or p.name.startswith(".") for p in work.iterdir())

    with SegmentWriter(work, fps=25, size=SIZE, preset="ultrafast", segment_frames=4) as writer:
        assert writer.start == 8
        for i in range(writer.start, n):
            writer.write(frame(i))
    assert completed_frames(work) == n
    assert not [p for p in work.iterdir() if p.name.startswith(".")], (
        "the dead writer's partial segment is gone"
    )

    straight = tmp_path / "straight run"
    with SegmentWriter(straight, fps=25, size=SIZE, preset="ultrafast", segment_frames=4) as writer:
        for i in range(n):
            writer.write(frame(i))
    resumed, uninterrupted = segment_frames(work), segment_frames(straight)
    assert len(resumed) == len(uninterrupted) == n
    assert all(np.array_equal(a, b) for a, b in zip(resumed, uninterrupted, strict=True))


@pytest.mark.parametrize(
    ("fps", "n_frames", "audio_seconds"), [(25, 30, 1.0), (29.97, 31, 1.5), (24, 20, 0.3)]
)
def test_final_mp4_contract(tmp_path, fps, n_frames, audio_seconds):
    # audio longer than, shorter than and about equal to the video: always cut/padded to n_frames / fps
    wav = make_wav(tmp_path / "voice track.wav", audio_seconds)
    out = tmp_path / "out folder" / "final clip.mp4"
    size = (64, 48)
    result = encode_final(
        (frame(i, size) for i in range(n_frames)), n_frames, fps, size, wav, out, crf=23, preset="ultrafast"
    )
    assert result == out and out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["final clip.mp4"], "no temp file left"
    info = probe(out)
    assert info.video_codec == "h264" and info.pixel_format == "yuv420p"
    assert info.audio_codec == "aac" and info.sample_rate == 48_000
    assert (info.width, info.height) == size
    assert is_faststart(out)
    want = n_frames / fps
    one_frame = 1 / fps
    assert abs(info.video_duration - want) < 1e-3
    assert info.video_frames == n_frames
    assert abs(info.audio_duration - want) < one_frame
    assert abs(info.audio_duration - info.video_duration) < one_frame
    decoded_video = sum(1 for _ in iter_frames(out))
    assert decoded_video == n_frames
    # the decoder also returns the AAC encoder's padding of the last packet (< 1024 samples)
    assert 0 <= decoded_audio_samples(out) - round(want * 48_000) < 1024
    if audio_seconds >= want:  # noise all the way: AAC spends the whole 192 kb/s
        with av.open(str(out)) as c:
            assert 150_000 < c.streams.audio[0].bit_rate < 230_000


def test_final_encode_rejects_odd_size_and_wrong_count(tmp_path):
    wav = make_wav(tmp_path / "a.wav", 1.0)
    out = tmp_path / "x.mp4"
    with pytest.raises(InputError, match="output.size: H.264 yuv420p needs even width and height, got 63x48"):
        encode_final(iter([]), 10, 25, (63, 48), wav, out)
    with pytest.raises(RenderError, match="got 5 frames, expected 10"):
        encode_final((frame(i, (64, 48)) for i in range(5)), 10, 25, (64, 48), wav, out, preset="ultrafast")
    with pytest.raises(RenderError, match="more than the 3 frames"):
        encode_final((frame(i, (64, 48)) for i in range(5)), 3, 25, (64, 48), wav, out, preset="ultrafast")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"], "nothing under the final name, no temp"


def test_failed_encode_keeps_previous_output(tmp_path):
    wav = make_wav(tmp_path / "a.wav", 1.0)
    out = tmp_path / "x.mp4"
    encode_final((frame(i, (64, 48)) for i in range(5)), 5, 25, (64, 48), wav, out, preset="ultrafast")
    before = out.read_bytes()

    def failing():
        yield frame(0, (64, 48))
        raise RuntimeError("compositor crashed")

    with pytest.raises(RuntimeError):
        encode_final(failing(), 5, 25, (64, 48), wav, out, preset="ultrafast")
    assert out.read_bytes() == before


def test_temp_names_are_unique():
    names = {temp_path_for("/x/out.mp4") for _ in range(100)}
    assert len(names) == 100
    assert all(p.parent == Path("/x") and p.suffix == ".mp4" and str(os.getpid()) in p.name for p in names)


def test_final_colours_survive_and_are_tagged_bt709(tmp_path):
    wav = make_wav(tmp_path / "a.wav", 0.2)
    skin = np.zeros((48, 64, 3), np.uint8)
    skin[:] = (200, 140, 110)
    out = encode_final((skin for _ in range(4)), 4, 25, (64, 48), wav, tmp_path / "c.mp4", preset="ultrafast")
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_primaries, cc.color_trc) == (1, 1, 1)  # ITU-R BT.709
    back = next(iter_frames(out))
    assert np.abs(back.astype(int) - skin.astype(int)).max() <= 3


def test_i420_frames_match_ffmpegs_own_bt709_conversion():
    from skimage import data

    from pipelines.media.ffmpeg import ffmpeg_command
    from pipelines.media.video_out import I420Frames

    rgb = np.ascontiguousarray(
        data.astronaut()[:256, 100:356]
    )  # face, hair, background: edges in every colour
    ours = np.frombuffer(I420Frames((256, 256))(rgb), np.uint8).astype(int)
    ref = subprocess.run(
        ffmpeg_command(
            ["-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "256x256", "-i", "pipe:0"]
            + ["-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p", "-f", "rawvideo", "pipe:1"]
        ),
        input=rgb.tobytes(),
        capture_output=True,
        check=True,
    ).stdout
    ref = np.frombuffer(ref, np.uint8).astype(int)
    luma = 256 * 256
    assert len(ours) == len(ref) == luma * 3 // 2
    assert np.abs(ours[:luma] - ref[:luma]).max() <= 1  # the same matrix and range; rounding apart
    # chroma: a 2x2 mean here, ffmpeg's scaler filters wider, so they differ a little only at edges
    assert np.abs(ours[luma:] - ref[luma:]).mean() < 0.5


def test_audio_track_failure_names_the_encode_and_leaves_nothing(tmp_path):
    from pipelines.media.ffmpeg import FFmpegError

    not_audio = tmp_path / "not.wav"
    not_audio.write_bytes(b"RIFF nonsense")
    track = AudioTrack(not_audio, 10, 25, tmp_path / "w")
    with pytest.raises(FFmpegError, match="AAC encode of not.wav"):
        track.finish()
    assert list((tmp_path / "w").iterdir()) == []


def test_audio_track_abort_stops_the_encode(tmp_path):
    track = AudioTrack(make_wav(tmp_path / "a.wav", 2.0), 50, 25, tmp_path / "w")
    track.abort()
    assert list((tmp_path / "w").iterdir()) == []


def test_x264_params_reach_the_encoder(tmp_path):
    """x264 writes its settings into the stream (an SEI message): the options given on top of the preset are
    there, and the preset's own are there without them."""

    def settings(params):
        work = tmp_path / str(params)
        with SegmentWriter(
            work, fps=25, size=SIZE, preset="veryfast", segment_frames=3, x264_params=params
        ) as w:
            for i in range(3):
                w.write(frame(i))
        data = completed_segments(work)[0][2].read_bytes()
        return data[data.index(b"options: ") :].split(b"\x00")[0].decode()

    assert "me=hex subme=2" in settings(None)  # veryfast's own
    assert "me=dia subme=1" in settings("me=dia:subme=1")
