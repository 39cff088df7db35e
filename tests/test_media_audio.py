import numpy as np
import pytest

from pipelines.errors import InputError
from pipelines.media.audio import (
    RawAudio,
    frame_count,
    join_audio,
    join_segments,
    load_audio,
    measure_loudness,
    pad_or_trim,
    sample_count,
)
from pipelines.media.probe import probe
from tests.media_helpers import make_audio

FORMATS = [
    (".wav", 44_100, 2),
    (".mp3", 22_050, 1),
    (".ogg", 32_000, 2),
    (".flac", 11_025, 1),
    (".m4a", 44_100, 2),
    (".wav", 37_800, 1),
]


@pytest.mark.parametrize(("suffix", "rate", "channels"), FORMATS)
def test_load_any_format_mono_resampled(tmp_path, suffix, rate, channels):
    path = make_audio(tmp_path / f"in put{suffix}", duration=1.5, rate=rate, channels=channels)
    samples = load_audio(path, 16_000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    # lossy codecs may keep a few ms of encoder padding; the length is 1.5 s to within 10 ms
    assert abs(len(samples) - 24_000) <= 160
    assert 0.005 < np.abs(samples).max() <= 1.0  # sine at 1/8 full scale, -20 dB


def test_load_keeps_channels_when_asked(tmp_path):
    path = make_audio(tmp_path / "st.wav", duration=0.5, rate=48_000, channels=2)
    samples = load_audio(path, 48_000, mono=False)
    assert samples.shape == (24_000, 2)


@pytest.mark.parametrize(("suffix", "slack"), [(".wav", 0), (".flac", 0), (".ogg", 400)])
def test_very_short_file(tmp_path, suffix, slack):
    path = make_audio(tmp_path / f"blip{suffix}", duration=0.05, rate=22_050)
    samples = load_audio(path, 16_000)
    # 50 ms; Vorbis may keep up to one short block of encoder padding
    assert 800 <= len(samples) <= 801 + slack  # 1103 source samples -> 800.4


def test_unreadable_inputs_name_the_file(tmp_path):
    missing = tmp_path / "gone.wav"
    with pytest.raises(InputError, match="gone.wav: audio file 'gone.wav' not found"):
        load_audio(missing, 16_000)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.mp3: audio file 'empty.mp3' is empty"):
        load_audio(empty, 16_000)
    junk = tmp_path / "junk file.wav"
    junk.write_bytes(b"this is not audio at all" * 50)
    with pytest.raises(InputError, match="junk file.wav: cannot decode audio file 'junk file.wav'"):
        load_audio(junk, 16_000)


def test_video_without_audio_stream(tmp_path):
    from pipelines.media.ffmpeg import run_ffmpeg

    silent_video = tmp_path / "video only.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=64x48:d=0.2", "-c:v", "libx264", "-y", str(silent_video)])
    with pytest.raises(InputError, match="video only.mp4: 'video only.mp4' has no audio stream"):
        load_audio(silent_video, 16_000)


def test_pad_trim_and_counts():
    x = np.arange(10, dtype=np.float32)
    assert len(pad_or_trim(x, 4)) == 4 and pad_or_trim(x, 4)[-1] == 3
    padded = pad_or_trim(x, 13)
    assert len(padded) == 13 and padded[10:].tolist() == [0, 0, 0]
    assert frame_count(3.0, 25) == 75
    assert frame_count(3.0, 29.97) == 90  # 89.91 rounds up
    assert frame_count(1.02, 25) == 26 and frame_count(1.019, 25) == 25
    assert sample_count(90, 29.97, 48_000) == round(90 / 29.97 * 48_000)
    assert sample_count(75, 25, 16_000) == 48_000


def test_join_segments_with_pauses():
    a = RawAudio(np.ones(800, np.float32), 8_000)  # 0.1 s
    joined = join_segments([a, 0.25, a], 8_000)
    assert len(joined) == 800 + 2_000 + 800
    assert joined[:800].min() == 1 and joined[800:2_800].max() == 0 and joined[2_800:].min() == 1
    with pytest.raises(InputError, match=r"audio\[1\]: pause must be >= 0"):
        join_segments([a, -1.0], 8_000)


def join_and_write(sources, fps, work_dir, **targets):
    """join_audio then write_normalised, as a render does: (the joined audio, the output track's loudness)."""
    joined = join_audio(sources, fps, work_dir, **targets)
    return joined, joined.write_normalised()


@pytest.mark.parametrize("fps", [25, 29.97])
def test_joined_audio_segments_loudness_and_exact_length(tmp_path, fps):
    first = make_audio(
        tmp_path / "part one.mp3", duration=2.0, rate=44_100, channels=2, kind="noise", volume_db=-30
    )
    second = make_audio(tmp_path / "part two.flac", duration=1.3, rate=11_025, kind="sine", volume_db=-6)
    tts = RawAudio((0.05 * np.sin(np.arange(22_050) * 0.07)).astype(np.float32), 22_050)
    work = tmp_path / "work dir"
    audio, loud_out = join_and_write([first, 0.4, second, tts], fps=fps, work_dir=work)

    assert abs(audio.source_duration - (2.0 + 0.4 + 1.3 + 1.0)) < 0.06
    assert audio.n_frames == round(audio.source_duration * fps)
    assert audio.duration == audio.n_frames / fps
    assert len(audio.samples_16k) == round(audio.n_frames / fps * 16_000)
    assert audio.samples_16k.dtype == np.float32
    wav = load_audio(audio.wav_48k, 48_000)
    assert len(wav) == round(audio.n_frames / fps * 48_000)
    info = probe(audio.wav_48k)
    assert info.sample_rate == 48_000 and info.channels == 1

    measured = measure_loudness(audio.wav_48k)
    assert abs(measured.integrated - (-16.0)) <= 1.0
    assert measured.true_peak <= -1.5 + 0.5
    assert audio.normalisation.loudness_in.integrated < -20  # it really was changed
    assert abs(loud_out.integrated + 16.0) <= 1.0
    assert not list(work.glob(".*part*")), "no temporary files left behind"


def test_joined_audio_custom_target(tmp_path):
    src = make_audio(tmp_path / "speech.wav", duration=3.0, kind="noise", volume_db=-10)
    audio, _ = join_and_write([src], fps=25, work_dir=tmp_path / "w", target_lufs=-23.0)
    assert abs(measure_loudness(audio.wav_48k).integrated + 23.0) <= 1.0
    assert audio.normalisation.kind in ("linear", "limited")


def test_joined_audio_silence_left_alone(tmp_path):
    audio, loud_out = join_and_write([1.0], fps=25, work_dir=tmp_path)
    assert audio.n_frames == 25 and audio.normalisation.kind == "none" and loud_out is None
    assert np.abs(audio.samples_16k).max() == 0


def test_joined_audio_rejects_empty_and_too_short(tmp_path):
    with pytest.raises(InputError, match="audio: the audio is empty"):
        join_and_write([0.0], fps=25, work_dir=tmp_path)
    with pytest.raises(InputError, match="shorter than one frame"):
        join_and_write([RawAudio(np.ones(100, np.float32), 16_000)], fps=25, work_dir=tmp_path)


def test_joined_audio_clip_shorter_than_a_gating_block(tmp_path):
    # under 0.4 s R128 has no integrated loudness; the clip is still brought to the target
    src = make_audio(tmp_path / "hi.wav", duration=0.3, kind="noise", volume_db=-25)
    audio, _ = join_and_write([src], fps=25, work_dir=tmp_path / "w")
    assert audio.n_frames == 8 and audio.normalisation.kind == "short-clip gain"
    looped = measure_loudness(["-stream_loop", "49", "-i", str(audio.wav_48k)])
    assert abs(looped.integrated + 16.0) <= 1.0


def test_real_speech_when_present(shared_dir, tmp_path):
    wavs = sorted((shared_dir / "data" / "audio").glob("*.wav"))
    if not wavs:
        pytest.skip("no real audio in ../shared")
    audio, _ = join_and_write([wavs[0]], fps=25, work_dir=tmp_path)
    assert abs(measure_loudness(audio.wav_48k).integrated + 16.0) <= 1.0
    assert len(audio.samples_16k) == audio.n_frames * 640


def test_the_decoded_copy_is_the_speech_before_the_normalisation_gain(tmp_path):
    src = make_audio(tmp_path / "quiet.wav", duration=2.0, rate=16_000, kind="sine", volume_db=-30)
    audio = join_audio([src], fps=25, work_dir=tmp_path / "w")
    gain = np.float32(10.0 ** (audio.normalisation.gain_db / 20.0))
    assert audio.normalisation.gain_db > 10  # a quiet file: the engines' copy is much louder
    np.testing.assert_array_equal(audio.samples_16k, audio.decoded_16k * gain)
    decoded = load_audio(src, 16_000)
    n = min(len(decoded), len(audio.decoded_16k))
    # through the 48 kHz join and back: the same speech at its own level, not the normalised one
    assert np.abs(audio.decoded_16k[:n] - decoded[:n]).max() < 2e-3
    assert abs(np.abs(audio.decoded_16k).max() - np.abs(decoded).max()) < 2e-3
