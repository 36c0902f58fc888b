"""A failed step as Dagster shows it: the satellite's own message first, where the step is written, retried only if worth it."""

from __future__ import annotations

from typing import Any

import dagster as dg

from exo_dagster.sdk.step_errors import PERMANENT, message


def location_metadata(step: Any) -> dict[str, Any]:
    """Where the step is written: FILE:LINE, its identifier and name, its satellite."""
    where = step.location
    return {
        "exo/source": f"{where.file}:{where.line}",
        "exo/step": f"{step.identifier} ({step.spec.name})",
        "exo/satellite": f"{step.satellite.id}@{step.satellite.version}",
    }


def step_failure(exc: BaseException, error_kind: str, step: Any, mask=lambda text: text,
                 metadata: dict[str, Any] | None = None) -> dg.Failure:
    """A Failure that leads with the satellite's message, points to the YAML, and retries only if worth it."""
    meta = {**location_metadata(step), "exo/error": type(exc).__name__, "exo/error-kind": error_kind, **(metadata or {})}
    return dg.Failure(description=mask(message(exc)), metadata=meta, allow_retries=error_kind != PERMANENT)
