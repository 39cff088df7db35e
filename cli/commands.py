"""The command modules, in the order their commands appear in --help."""

from __future__ import annotations

MODULES: list = []
