"""The command modules, in the order their commands appear in --help."""

from __future__ import annotations

from cli import personas, render, schema, validate, weights

MODULES: list = [render, validate, personas, schema, weights]
