"""The error table: expected exceptions become one line on stderr and an exit code, never a traceback.

Exit codes (documented in the README): 0 all done, 1 internal error, 2 invalid input (spec or media),
3 some jobs failed (the others finished), 4 model weights missing.
"""

from __future__ import annotations

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
