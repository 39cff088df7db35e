"""Errors that mean something to a user, each with its exit code.

The CLI's error table maps these to one-line messages; anything else is an internal error (exit 1).
"""

from __future__ import annotations

from pathlib import Path


class TalkreelError(Exception):
    """Base class of every expected error; `exit_code` is what the CLI returns for it."""

    exit_code = 1


class InputError(TalkreelError):
    """Invalid input (spec or media): names the file, the field and what was expected."""

    exit_code = 2

    def __init__(self, file: str | Path | None, field: str | None, message: str):
        self.file = str(file) if file is not None else None
        self.field = field
        self.message = message
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [p for p in (self.file, self.field) if p]
        return ": ".join([*parts, self.message])

    def __reduce__(self):
        # rebuilt from its three parts (an engine's error crosses from its child process, pipelines.ahead)
        return type(self), (self.file, self.field, self.message)


class WeightsMissingError(TalkreelError):
    """An engine's model weights are not on this machine; the message names the command to fetch them."""

    exit_code = 4


class RenderError(TalkreelError):
    """A job failed while rendering (engine error, no face anywhere, ...); the batch goes on."""

    exit_code = 3
