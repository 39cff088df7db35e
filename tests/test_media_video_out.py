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
from pipelines.media.video_out import ChunkWriter, completed_frames, encode_final, iter_chunk_frames

SIZE = (48, 32)
REPO = Path(__file__).resolve().parents[1]


def frame(i: int, size=SIZE) -> np.ndarray:
    """Frame i: noise seeded by its index, the hardest case for a lossless codec and easy to regenerate."""
    w, h = size
    return np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)


def decoded_audio_samples(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(audio=0))


def make_wav(path: Path, seconds: float) -> Path:
    noise = f"anoisesrc=sample_rate=48000:amplitude=0.3:seed=3:d={seconds}"
    run_ffmpeg(["-f", "lavfi", "-i", noise, "-c:a", "pcm_s16le", "-y", str(path)])
    return path


def test_chunks_are_lossless_and_complete(tmp_path):
    work = tmp_path / "work dir"
    with ChunkWriter(work, fps=25, size=SIZE, chunk_frames=4) as writer:
        assert writer.start == 0
        for i in range(10):
            writer.write(frame(i))
    names = sorted(p.name for p in work.iterdir())
    assert names == ["chunk_00000000_000004.mkv", "chunk_00000004_000004.mkv", "chunk_00000008_000002.mkv"]
    assert completed_frames(work) == 10
    back = list(iter_chunk_frames(work))
    assert len(back) == 10 and all((b == frame(i)).all() for i, b in enumerate(back))
    assert [(b == frame(i + 6)).all() for i, b in enumerate(iter_chunk_frames(work, start=6))] == [True] * 4


def test_wrong_frame_shape_is_rejected(tmp_path):
    with (
        ChunkWriter(tmp_path, fps=25, size=SIZE) as writer,
        pytest.raises(ValueError, match="frame 0: expected"),
    ):
        writer.write(np.zeros((10, 10, 3), np.uint8))


def test_abandoned_writer_leaves_only_complete_chunks(tmp_path):
    writer = ChunkWriter(tmp_path, fps=25, size=SIZE, chunk_frames=4)
    for i in range(6):
        writer.write(frame(i))
    writer.abandon()
    assert completed_frames(tmp_path) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk_00000000_000004.mkv"]


def test_exception_inside_block_discards_partial_chunk(tmp_path):
    with pytest.raises(RuntimeError), ChunkWriter(tmp_path, fps=25, size=SIZE, chunk_frames=4) as writer:
        for i in range(7):
            writer.write(frame(i))
        raise RuntimeError("engine failed")
    assert completed_frames(tmp_path) == 4


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from pipelines.media.video_out import ChunkWriter
    work, size, chunk, stop = sys.argv[1], (48, 32), 4, int(sys.argv[2])
    writer = ChunkWriter(work, fps=25, size=size, chunk_frames=chunk)
    for i in range(writer.start, stop):
        writer.write(np.random.default_rng(i).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    # ffmpeg opens its output only once it has seen input: wait for the partial chunk to exist
    while not list(Path(work).glob(".chunk_*.part.mkv")):
        time.sleep(0.01)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_sigkill_mid_chunk_then_resume_gives_identical_frames(tmp_path):
    n = 17
    work = tmp_path / "killed run"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(work), "10"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"  # 2 chunks done, 2 frames into the third
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert completed_frames(work) == 8
    assert all(p.name.startswith("chunk_") or p.name.startswith(".") for p in work.iterdir())

    with ChunkWriter(work, fps=25, size=SIZE, chunk_frames=4) as writer:
        assert writer.start == 8
        for i in range(writer.start, n):
            writer.write(frame(i))
    assert completed_frames(work) == n
    assert not [p for p in work.iterdir() if p.name.startswith(".")], (
        "the dead writer's partial chunk is gone"
    )

    straight = tmp_path / "straight run"
    with ChunkWriter(straight, fps=25, size=SIZE, chunk_frames=4) as writer:
        for i in range(n):
            writer.write(frame(i))
    resumed, uninterrupted = list(iter_chunk_frames(work)), list(iter_chunk_frames(straight))
    assert len(resumed) == len(uninterrupted) == n
    assert all((a == b).all() for a, b in zip(resumed, uninterrupted, strict=True))
    assert all((a == frame(i)).all() for i, a in enumerate(resumed))


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


def test_chunk_whose_name_lies_is_an_error(tmp_path):
    with ChunkWriter(tmp_path, fps=25, size=SIZE, chunk_frames=4) as writer:
        for i in range(3):
            writer.write(frame(i))
    (tmp_path / "chunk_00000000_000003.mkv").rename(tmp_path / "chunk_00000000_000005.mkv")
    assert completed_frames(tmp_path) == 5
    with pytest.raises(RenderError, match="holds 3 frames, its name says 5"):
        list(iter_chunk_frames(tmp_path))
