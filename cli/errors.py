"""The error table: expected exceptions become one line on stderr and an exit code, never a traceback.

Exit codes (documented in the README): 0 all done, 1 internal error, 2 invalid input (spec or media),
3 some jobs failed (the others finished), 4 model weights missing.
"""

from __future__ import annotations

import errno
import functools
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from cli.output import err_console
from pipelines.errors import TalkreelError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_JOBS_FAILED = 3
EXIT_WEIGHTS = 4

F = TypeVar("F", bound=Callable[..., Any])

# OS errors that describe the user's machine, not a bug: said plainly instead of as an internal error.
ENVIRONMENT_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "a file name is too long for the filesystem",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EMFILE: "too many open files (raise `ulimit -n`)",
}


def environment_message(exc: BaseException) -> str | None:
    """A one-line message for an OSError caused by the machine (disk full, name too long, ...), else None."""
    if not isinstance(exc, OSError) or exc.errno not in ENVIRONMENT_ERRORS:
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{ENVIRONMENT_ERRORS[exc.errno]}{where}"


# -v on the root command sets this; commands read it through `verbose()`.
_state = {"verbose": False}


def set_verbose(value: bool) -> None:
    _state["verbose"] = value


def verbose() -> bool:
    return _state["verbose"]


def handle_errors(func: F) -> F:
    """Wrap a command: TalkreelError -> its exit code and one line; anything else -> exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except TalkreelError as exc:
            if verbose():
                err_console.print(traceback.format_exc(), markup=False, highlight=False)
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            raise typer.Exit(130) from None
        except Exception as exc:  # the internal-error row of the table
            environment = environment_message(exc)
            if environment:
                err_console.print(f"error: {environment}", markup=False, highlight=False, soft_wrap=True)
                raise typer.Exit(EXIT_INTERNAL) from None
            if verbose():
                err_console.print(traceback.format_exc(), markup=False, highlight=False)
            err_console.print(
                f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]
