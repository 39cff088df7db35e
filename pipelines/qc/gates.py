"""QC gates: thresholds on QC figures that make CI fail when an output got worse.

A gate is `NAME >= VALUE` (`--fail-under NAME=VALUE`: the figure must not fall under it) or `NAME <= VALUE`
(`--max NAME=VALUE`). A project keeps its gates in a YAML file (e.g. `qc-gates.yaml` at the project root):

    fail_under: {silent_closed_share: 0.8, sync_confidence: 3.0}
    max: {duration_difference: 0.04, face_sharpness_end_ratio: 1.5}

A gated figure that was not measured (no face, no pauses, no SyncNet run) fails: a gate never passes silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import InputError

# The numeric figures a gate may name (pipelines.qc.figures, .measure, .sync).
GATEABLE = (
    "mouth_audio_correlation",
    "silent_closed_share",
    "mouth_opening_mean",
    "mouth_opening_p95",
    "mouth_change_per_s",
    "av_offset_ms",
    "av_offset_correlation",
    "face_sharpness_median",
    "face_sharpness_end_ratio",
    "frames_without_face",
    "duration_difference",
    "loudness_lufs",
    "true_peak_dbtp",
    "sync_confidence",
    "sync_distance",
    "sync_offset_ms",
    "sync_similarity",
)


@dataclass(frozen=True)
class Gate:
    name: str
    minimum: bool  # True: value >= threshold (fail-under); False: value <= threshold (max)
    threshold: float

    def check(self, figures: dict[str, Any]) -> str | None:
        """None when the figure passes, else the one-line reason."""
        value = figures.get(self.name)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{self.name} not measured (gate {self})"
        ok = value >= self.threshold if self.minimum else value <= self.threshold
        return None if ok else f"{self.name} {value:g} {'<' if self.minimum else '>'} {self.threshold:g}"

    def __str__(self) -> str:
        return f"{self.name} {'>=' if self.minimum else '<='} {self.threshold:g}"


def parse_gate(text: str, minimum: bool, where: str) -> Gate:
    """'NAME=VALUE' of --fail-under (minimum) or --max."""
    name, sep, value = text.partition("=")
    return _gate(name.strip(), value.strip() if sep else "", minimum, where, text)


def parse_comparison(text: str, where: str) -> Gate:
    """'NAME>=VALUE' or 'NAME<=VALUE'."""
    for op, minimum in ((">=", True), ("<=", False)):
        if op in text:
            name, _, value = text.partition(op)
            return _gate(name.strip(), value.strip(), minimum, where, text)
    raise InputError(None, where, f"expected NAME>=VALUE or NAME<=VALUE, got {text!r}")


def _gate(name: str, value: str, minimum: bool, where: str, text: str) -> Gate:
    if name not in GATEABLE:
        raise InputError(None, where, f"unknown QC figure {name!r} in {text!r}; known: {', '.join(GATEABLE)}")
    try:
        threshold = float(value)
    except ValueError:
        raise InputError(None, where, f"expected a number after {name!r}, got {text!r}") from None
    if not math.isfinite(threshold):
        raise InputError(None, where, f"expected a finite number, got {text!r}")
    return Gate(name, minimum, threshold)


def load_gates(path: str | Path) -> list[Gate]:
    """The gates of a YAML gate file (`fail_under:` and `max:` mappings of figure -> number)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise InputError(path, None, f"cannot read the gate file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(path, None, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or set(data) - {"fail_under", "max"}:
        raise InputError(path, None, "expected a mapping with 'fail_under' and/or 'max'")
    gates = []
    for key, minimum in (("fail_under", True), ("max", False)):
        section = data.get(key) or {}
        if not isinstance(section, dict):
            raise InputError(path, key, "expected a mapping of QC figure -> number")
        for name, value in section.items():
            try:
                gates.append(_gate(str(name), str(value), minimum, key, f"{name}: {value}"))
            except InputError as exc:
                raise InputError(path, f"{key}.{name}", exc.message) from None
    return gates


def failures(figures: dict[str, Any] | None, gates: list[Gate]) -> list[str]:
    """The reasons the figures fail the gates (empty: all pass)."""
    if not gates:
        return []
    if not figures:
        return ["no QC figures (rendered with --no-qc?)"]
    return [reason for gate in gates if (reason := gate.check(figures)) is not None]
