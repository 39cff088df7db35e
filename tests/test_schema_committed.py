"""The JSON Schemas in schema/ (what editors validate job files against) match the models: `make schema` after a
spec change, and commit the result."""

import json
from pathlib import Path

from pipelines.spec.schema import schemas

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schema"


def test_committed_schemas_are_current():
    for name, schema in schemas().items():
        committed = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
        assert committed == schema, f"schema/{name} is stale: run `make schema`"


def test_example_jobs_point_editors_at_the_schema():
    for job in (SCHEMA_DIR.parent / "jobs").glob("*.yaml"):
        assert job.read_text().startswith("# yaml-language-server: $schema=../schema/job.schema.json\n"), job
