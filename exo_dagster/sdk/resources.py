"""The vocabulary satellites and clusters share: strict models spelled with hyphens, and the resources a step needs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


def kebab(name: str) -> str:
    return name.rstrip("_").replace("_", "-")


class StrictModel(BaseModel):
    """Strict (unknown keys are errors), YAML spelling with hyphens, Python spelling accepted too."""

    model_config = ConfigDict(extra="forbid", alias_generator=kebab, populate_by_name=True, allow_inf_nan=False)


class Resources(StrictModel):
    """What one step needs: GPUs (the local executor leases devices), and hints for Celery/Kubernetes."""

    gpu: int = Field(default=0, ge=0, le=64)
    gpu_type: str | None = None
    cpu: float | None = Field(default=None, gt=0, le=1024)
    memory: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")
