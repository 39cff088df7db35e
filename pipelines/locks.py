"""One lock per output file, so two `talkreel render` processes never render the same output at once."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class OutputLock:
    """An advisory flock on `<output>.lock` (released by the kernel if the holder dies, even by SIGKILL)."""

    def __init__(self, output: Path):
        self.path = output.with_name(f".{output.name}.lock")
        self._fd: int | None = None

    def acquire(self, wait: bool) -> bool:
        """Take the lock; with wait=False return False at once when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire(wait=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
