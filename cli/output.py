"""Where the CLI writes: Rich (human) output on stderr, machine-readable JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Progress, tables and messages go to stderr so that `--json` stdout stays parseable.
err_console = Console(stderr=True)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()
