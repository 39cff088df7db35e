import os
import stat
from pathlib import Path

import pytest

from pipelines.errors import InputError
from pipelines.media.ffmpeg import ENV_VAR, FFmpegError, ffmpeg_exe, run_ffmpeg
from pipelines.media.probe import probe
from tests.media_helpers import make_audio


def test_env_var_wins(tmp_path, monkeypatch):
    real = ffmpeg_exe()
    link = tmp_path / "my ffmpeg"
    link.symlink_to(real)
    monkeypatch.setenv(ENV_VAR, str(link))
    assert ffmpeg_exe() == str(link)
    out = make_audio(tmp_path / "via env.wav", duration=0.2)
    assert probe(out).has_audio


def test_env_var_not_executable_is_input_error(tmp_path, monkeypatch):
    bogus = tmp_path / "not-ffmpeg"
    bogus.write_text("hello")
    bogus.chmod(bogus.stat().st_mode & ~stat.S_IXUSR & ~stat.S_IXGRP & ~stat.S_IXOTH)
    monkeypatch.setenv(ENV_VAR, str(bogus))
    with pytest.raises(InputError, match=ENV_VAR):
        ffmpeg_exe()


def test_falls_back_to_path_then_bundled(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on PATH
    import imageio_ffmpeg

    assert ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
    (tmp_path / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    assert ffmpeg_exe() == str(tmp_path / "ffmpeg")


def test_failure_carries_ffmpeg_stderr(tmp_path):
    missing = tmp_path / "dir with spaces" / "nothing here.wav"
    with pytest.raises(FFmpegError) as err:
        run_ffmpeg(["-i", str(missing), "-f", "null", "-"], what="decode test")
    message = str(err.value)
    assert "decode test failed" in message
    assert "nothing here.wav" in message  # ffmpeg's own words, naming the file
    assert err.value.returncode != 0


def test_arguments_are_never_shell_parsed(tmp_path):
    odd = tmp_path / "a b; echo $HOME 'q'.wav"
    make_audio(odd, duration=0.1)
    assert odd.is_file() and probe(odd).has_audio
    assert not (Path(os.getcwd()) / "q'.wav").exists()
