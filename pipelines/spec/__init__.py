"""Job and persona specs: pydantic models, the batch loader, JSON Schema export."""

from pipelines.spec.job import Job, Output
from pipelines.spec.loader import Batch, LoadedJob, LoadedPersona, load_batch, load_persona, load_persona_file
from pipelines.spec.persona import Persona

__all__ = [
    "Batch",
    "Job",
    "LoadedJob",
    "LoadedPersona",
    "Output",
    "Persona",
    "load_batch",
    "load_persona",
    "load_persona_file",
]
