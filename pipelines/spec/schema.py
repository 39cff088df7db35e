"""JSON Schema of job and persona files, so editors can validate them (`talkreel schema`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.spec.job import Job
from pipelines.spec.persona import Persona

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


def _schema(model: type[Job] | type[Persona], title: str) -> dict[str, Any]:
    # "validation" mode describes what a user may write (bare engine names, a plain audio path).
    schema = model.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_URI, **schema, "title": title}


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema."""
    return {
        "job.schema.json": _schema(Job, "talkreel job"),
        "persona.schema.json": _schema(Persona, "talkreel persona"),
    }


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = out_dir / name
        path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
