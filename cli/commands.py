"""The command modules, in the order their commands appear in --help."""

from __future__ import annotations

from cli import personas, provenance, qc, render, report, schema, validate, verify, weights

MODULES: list = [render, validate, personas, schema, weights, verify, provenance, qc, report]
