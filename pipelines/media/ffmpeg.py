"""Finding and running the ffmpeg binary.

Every ffmpeg call in talkreel goes through here: argument lists only (never a shell string, so paths with
spaces or quotes are safe), stderr kept aside so a failure names ffmpeg's own last words.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from pipelines.errors import InputError, RenderError

ENV_VAR = "TALKREEL_FFMPEG"
STDERR_TAIL_LINES = 8


class FFmpegError(RenderError):
    """ffmpeg exited non-zero; `stderr_tail` holds its last lines of stderr."""

    def __init__(self, what: str, returncode: int, stderr_tail: str):
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        detail = stderr_tail.strip().replace("\n", " | ") or "no output on stderr"
        super().__init__(f"{what} failed (ffmpeg exit {returncode}): {detail}")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: $TALKREEL_FFMPEG, else `ffmpeg` on PATH, else imageio-ffmpeg's bundled one.

    Looked up on every call (cheap) so a changed environment variable takes effect without a restart.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = shutil.which(configured) or (configured if os.access(configured, os.X_OK) else None)
        if path is None or not Path(path).is_file():
            raise InputError(None, ENV_VAR, f"{configured!r} is not an executable ffmpeg binary")
        return path
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    import imageio_ffmpeg  # imported late: it is only the last resort

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_command(args: Sequence[str | os.PathLike]) -> list[str]:
    """The full argument list: binary, quiet-but-useful logging, never read the terminal, then `args`."""
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", *(os.fspath(a) for a in args)]


def stderr_tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_ffmpeg(
    args: Sequence[str | os.PathLike],
    *,
    what: str = "ffmpeg",
    input: bytes | None = None,
    capture_stdout: bool = False,
    loglevel: str = "error",
) -> subprocess.CompletedProcess:
    """Run ffmpeg to completion; raise FFmpegError (with ffmpeg's last stderr lines) on a non-zero exit.

    `what` names the operation in the error message ("decode speech.mp3", "loudness pass 1", ...).
    stdout is captured only when asked; stderr is always captured (loudnorm prints its JSON there).
    """
    cmd = ffmpeg_command(["-loglevel", loglevel, *args])
    proc = subprocess.run(
        cmd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if proc.returncode != 0:
        raise FFmpegError(what, proc.returncode, stderr_tail(proc.stderr.decode("utf-8", "replace")))
    return proc


class FFmpegPipe:
    """A long-running ffmpeg with a pipe on stdin (frames in) or stdout (samples out).

    stderr goes to an unnamed temporary file, not a pipe: a chatty ffmpeg can then never block on a full
    stderr pipe while we are busy writing frames to its stdin.
    """

    def __init__(
        self, args: Sequence[str | os.PathLike], *, what: str, stdin: bool = False, stdout: bool = False
    ):
        self.what = what
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ffmpeg_command(["-loglevel", "error", *args]),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def finish(self) -> None:
        """Close stdin, wait for exit; raise FFmpegError if ffmpeg failed."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        code = self.proc.wait()
        tail = stderr_tail(self.stderr_text())
        self._stderr.close()
        if code != 0:
            raise FFmpegError(self.what, code, tail)

    def abort(self) -> None:
        """Kill ffmpeg and reap it; used when the producer of frames failed."""
        if self.proc.poll() is None:
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except (BrokenPipeError, OSError):
                    pass
        self.proc.wait()
        self._stderr.close()

    def failure(self) -> FFmpegError:
        """The error to raise after a broken pipe: ffmpeg died, its stderr says why."""
        code = self.proc.wait()
        return FFmpegError(self.what, code, stderr_tail(self.stderr_text()))
