"""Checks of `partitions:` and of `${{ partition.* }}` templates that need the raw mapping or the whole cluster.

The pydantic model (models.Partitions) checks each field; these read the raw YAML, so "two kinds", an empty
or a duplicated static key are reported even when a field inside has an error too.
"""

from __future__ import annotations

from typing import Any, Callable

from exo_dagster.spec.models import PARTITION_KINDS

KINDS = (*PARTITION_KINDS, "static")
PATH = ("cluster", "partitions")
Report = Callable[..., None]  # _Checker.error(path, message, hint, key=...)


def partition_kind(raw: Any) -> str | None:
    """"static", "time" or None (no `partitions:`), read from the raw mapping (an invalid one counts as written)."""
    if not isinstance(raw, dict) or not raw:
        return None if raw is None else "invalid"
    if "static" in raw and not any(k in raw for k in PARTITION_KINDS):
        return "static"
    return "time" if any(k in raw for k in PARTITION_KINDS) else "invalid"


def check_partitions(raw: Any, error: Report) -> None:
    if not isinstance(raw, dict):
        return  # absent, or of the wrong type: the whole-file validation reports it
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) > 1:
        error(PATH + (kinds[1],), f"`partitions` has one kind, got {', '.join(kinds)}",
              "keep one of them: a cluster is partitioned by time (hourly, daily, weekly, monthly) or by `static` keys", key=True)
    elif not kinds and not (raw.keys() - set(KINDS)):
        error(PATH, "`partitions` needs a kind", "write e.g. `daily: {start: \"2026-11-01\"}` or `static: [eu, us]`", key=True)
    static = raw.get("static")
    if isinstance(static, list):
        if not static:
            error(PATH + ("static",), "`static` needs at least one partition key", "list the keys, e.g. `static: [eu, us, apac]`")
        seen: set[str] = set()
        for i, key in enumerate(static):
            text = str(key)
            if text in seen:
                error(PATH + ("static", i), f"duplicate partition key `{text}`", "each static partition key may appear once")
            seen.add(text)


def check_partition_reference(kind: str | None, field: str, text: str) -> tuple[str, str] | None:
    """(message, hint) when `${{ partition.FIELD }}` cannot be resolved in a cluster with partitions of `kind`."""
    if kind is None:
        return (f"`{text}`: this cluster has no partitions; add `partitions:`",
                "e.g. `partitions: {daily: {start: \"2026-11-01\"}}` under `cluster:`, or remove the reference")
    if kind == "static" and field in ("start", "end"):
        return (f"`{text}`: static partitions have no {field}",
                "use `${{ partition.key }}`; start and end exist for hourly, daily, weekly and monthly partitions")
    return None


def check_trigger_kinds(partitions: Any, trigger: Any, error: Report) -> None:
    """A `files` or `after` trigger launches runs without a partition key, which a partitioned cluster refuses."""
    if partition_kind(partitions) is None:
        return
    listed = list(enumerate(trigger)) if isinstance(trigger, list) else [(None, trigger)]
    for index, one in listed:
        for kind in ("files", "after") if isinstance(one, dict) else ():
            if kind in one:
                path = ("cluster", "trigger") + ((index,) if index is not None else ()) + (kind,)
                error(path, f"a `{kind}` trigger cannot start a partitioned cluster: its runs would have no partition key",
                      "use a `cron` trigger (each tick runs the tick's partition), `exo run --partition KEY` or a backfill",
                      key=True)
