"""CPU time of a block of work split by process: this process and each kind of descendant (Linux /proc).

A whole preview job runs in several processes: the render process (compositor, watermark, pipe writes, audio
preparation), the engine's forked child, the output audio's niced child, and ffmpeg children (one x264 encoder a
segment, the AAC encoder, the mux, decoders). getrusage gives their sum; this says which of them costs what.

Descendants are found and read from /proc by a sampling thread every `interval` seconds; a process's figure is
the last value seen, so each one that exits between two samples loses up to one interval of CPU time. The
sampler's own thread is taken out of this process's figure, and whatever the kinds do not account for (the
exited processes' last moments, anything too short-lived to be seen) is printed as the rest, against getrusage's
exact total, so the split can be checked.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def available() -> bool:
    return os.path.isfile(f"/proc/{os.getpid()}/stat")


def _stat(pid: int) -> tuple[float, int] | None:
    """(user + system CPU seconds, nice) of a process; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK, int(fields[16])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(v) for v in f.read().split()]
        except OSError:
            pass
    return found


def _command(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode("utf-8", "replace") for part in f.read().split(b"\0") if part]
    except OSError:
        return []


def ffmpeg_kind(command: list[str]) -> str | None:
    """What an ffmpeg child does, from its arguments; None for a process that is not (yet) ffmpeg."""
    if not command or "ffmpeg" not in os.path.basename(command[0]):
        return "ffprobe" if command and "ffprobe" in os.path.basename(command[0]) else None
    if "libx264" in command:
        return "ffmpeg x264 (video segments)"
    if "aac" in command:
        return "ffmpeg AAC (output audio)"
    if "concat" in command:
        return "ffmpeg mux"
    return "ffmpeg other (decodes, probes)"


class ProcessCpu:
    """Use as a context manager around the work; then `split()` gives {kind: CPU seconds}. `python_kind(nice)`
    names a forked Python child (an exec'd one is named by ffmpeg_kind)."""

    def __init__(self, python_kind: Callable[[int], str], interval: float = 0.01):
        self.python_kind = python_kind
        self.interval = interval
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-cpu", daemon=True)
        self._sampler_cpu = 0.0

    def _kind(self, pid: int, nice: int) -> str:
        return ffmpeg_kind(_command(pid)) or self.python_kind(nice)

    def _sample(self) -> None:
        todo = _children(os.getpid())
        while todo:
            pid = todo.pop()
            seen = _stat(pid)
            if seen is None:
                continue
            cpu, nice = seen
            kind = self._last.get(pid, ("", 0.0))[0]
            if not kind or not kind.startswith("ffmpeg"):  # a fork becomes ffmpeg when it execs
                kind = self._kind(pid, nice)
            self._last[pid] = (kind, cpu)
            todo += _children(pid)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)
        self._sampler_cpu = time.thread_time()

    def __enter__(self) -> ProcessCpu:
        self._self0 = _own_cpu()
        self._children0 = _children_cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()
        self._self = _own_cpu() - self._self0 - self._sampler_cpu
        self._all_children = _children_cpu() - self._children0

    def split(self) -> dict[str, float]:
        """CPU seconds by kind: "this process" (without the sampler), each kind of descendant, and "rest (not
        sampled)": what getrusage counted for the reaped children beyond the samples."""
        out = {"this process": self._self}
        for kind, cpu in self._last.values():
            out[kind] = out.get(kind, 0.0) + cpu
        sampled = sum(cpu for _, cpu in self._last.values())
        out["rest (not sampled)"] = self._all_children - sampled
        return out


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
