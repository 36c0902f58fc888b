"""`skip-when-empty`: which tables a step's input is, and whether they are all empty.

A step's input is its per-row source when it has one (`$${{ satellites.X.output.col }}`), else every
table it is wired to read (its references and `after:`, plus the step above it in `sequential` mode).
The step is skipped only when every one of them has no rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from exo_dagster.sdk.table import StoredTable
from exo_dagster.spec.ir import ParsedStep


def watched(step: ParsedStep, upstream: Iterable[str]) -> list[str]:
    """The identifiers whose rows decide whether `step` runs (`upstream`: what the compiler wires in)."""
    return [step.per_row_source] if step.per_row_source is not None else list(upstream)


def has_rows(table: StoredTable) -> bool:
    """Whether the stored table has at least one row; reads at most one (Parquet answers from its footer)."""
    return int(table.lazy().limit(1).select(pl.len()).collect().item()) > 0


def skip_message(step: ParsedStep, tables: dict[str, StoredTable]) -> str | None:
    """Why `step` is skipped (`tables`: its watched inputs by identifier), or None when any has rows."""
    if not tables or any(has_rows(t) for t in tables.values()):
        return None
    names = ", ".join(f"`{name}`" for name in tables)
    noun = "input" if len(tables) == 1 else "inputs"
    verb = "has" if len(tables) == 1 else "have"
    return f"{noun} {names} {verb} no rows: skipping step `{step.identifier}` and what depends on it"
