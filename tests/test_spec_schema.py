"""JSON Schema export of job and persona files."""

from __future__ import annotations

import json

from pipelines.spec.schema import schemas, write_schemas


def test_schemas_describe_what_a_user_may_write(tmp_path):
    every = schemas()
    assert sorted(every) == ["job.schema.json", "persona.schema.json"]
    job, persona = every["job.schema.json"], every["persona.schema.json"]
    assert job["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert job["additionalProperties"] is False
    assert set(job["required"]) == {"kind", "persona", "audio"}
    assert job["properties"]["kind"]["enum"] == ["intro", "summary", "faq"]
    # the short forms are part of the schema: a plain audio path and a bare engine name
    assert {"type": "string"} in job["properties"]["audio"]["anyOf"]
    engine_forms = job["properties"]["engine"]["anyOf"]
    assert {
        "enum": [
            "preview",
            "latentsync-1.5",
            "latentsync-1.6",
            "echomimic-v2",
            "echomimic-v2-acc",
            "musetalk-1.5",
            "echomimic-v3-flash",
            "echomimic-v3-preview",
        ],
        "type": "string",
    } in engine_forms
    assert {"$ref": "#/$defs/LatentSyncSettings"} in engine_forms
    latentsync = job["$defs"]["LatentSyncSettings"]["properties"]
    assert latentsync["steps"] == {
        "default": 20,
        "description": "denoising steps",
        "maximum": 100,
        "minimum": 1,
        "title": "Steps",
        "type": "integer",
    }
    assert {"title", "chapters", "question", "captions", "layout"} <= set(job["properties"])
    assert set(persona["required"]) == {"name", "source", "consent"}
    assert set(persona["$defs"]["Consent"]["required"]) == {"granted_by", "granted_on", "scope"}


def test_write_schemas(tmp_path):
    written = write_schemas(tmp_path / "schema")
    assert [p.name for p in written] == ["job.schema.json", "persona.schema.json"]
    assert json.loads(written[0].read_text()) == schemas()["job.schema.json"]
