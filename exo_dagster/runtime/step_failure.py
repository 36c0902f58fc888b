"""A failed step as Dagster shows it: the satellite's own message first, where the cause is written (the config
key or template that failed, else the step), what kind of cause it is, retried only if worth it."""

from __future__ import annotations

from typing import Any

import dagster as dg

from exo_dagster import keys
from exo_dagster.sdk.step_errors import CONFIG_KEY_ATTR, PERMANENT, TEMPLATE_ATTR, cause, message


def failed_key(step: Any, exc: BaseException | None) -> tuple[str | None, Any]:
    """The config/input key `exc` names (`config_key`, and `template` for a template that failed) and where
    it is written, as (dotted key, Location); (None, None) when the error names none, or one not in the file."""
    named = getattr(exc, CONFIG_KEY_ATTR, None) if exc is not None else None
    if not isinstance(named, str) or not named:
        return None, None
    known = getattr(step, "key_locations", None) or {}
    head = named if named.split(".", 1)[0] in ("config", "input") else f"config.{named}"
    section, _, rest = head.partition(".")
    for key in (head, f"{section}." + rest.replace("_", "-").rstrip("-")):  # a field name (`folder_path`, `from_`)
        if key in known:
            template = getattr(exc, TEMPLATE_ATTR, None)
            spot = (getattr(step, "template_locations", None) or {}).get((key, template)) if template else None
            return key, spot or known[key]
    return None, None


def location_metadata(step: Any, exc: BaseException | None = None) -> dict[str, Any]:
    """Where the cause is written: FILE:LINE:COL of the failing config key or template when `exc` names one
    (`exo/config-key`), else of the step; its identifier and name, its satellite."""
    key, where = failed_key(step, exc)
    meta = {
        keys.SOURCE: str(where or step.location),
        keys.STEP: f"{step.identifier} ({step.spec.name})",
        keys.SATELLITE: f"{step.satellite.id}@{step.satellite.version}",
    }
    if key:
        meta[keys.CONFIG_KEY] = key
    return meta


def described(step: Any, exc: BaseException, text: str) -> str:
    """`text` (the error's message) and, when the error names a key of this step, where that key is written."""
    key, where = failed_key(step, exc)
    return f"{text} (from {key} at {where})" if key else text


def step_failure(
    exc: BaseException, error_kind: str, step: Any, mask=lambda text: text, metadata: dict[str, Any] | None = None
) -> dg.Failure:
    """A Failure that leads with the satellite's message, points to the YAML, and retries only if worth it."""
    meta = {
        **location_metadata(step, exc),
        keys.ERROR: type(exc).__name__,
        keys.ERROR_KIND: error_kind,
        keys.CAUSE: cause(exc),
        **(metadata or {}),
    }
    return dg.Failure(
        description=mask(described(step, exc, message(exc))), metadata=meta, allow_retries=error_kind != PERMANENT
    )
