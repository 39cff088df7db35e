"""The command modules, in the order their commands appear in --help."""

from __future__ import annotations

from cli import render

MODULES: list = [render]
