"""Acme's satellites: a distribution of its own, found by exo through the entry-point group
`exo_dagster.satellites` (see pyproject.toml). It imports only `exo_dagster.sdk`."""

from __future__ import annotations

import polars as pl
from pydantic import Field

from exo_dagster.sdk import PermanentError, SatelliteConfig, StepContext, satellite


class ShoutConfig(SatelliteConfig):
    column: str = Field(description="the text column to upper-case")


@satellite(
    "satellite/acme/shout",
    config=ShoutConfig,
    version="0.1.0",
    outputs={"*": "the upstream table's columns, `column` upper-cased"},
)
def shout(ctx: StepContext, config: ShoutConfig) -> pl.LazyFrame:
    """Upper-cases one text column of the table it follows (or `input.table`)."""
    table = ctx.input_table()
    if table is None:
        raise PermanentError("shout: there is no table to read; put the step below one or set `input.table`")
    frame = table.lazy()
    if config.column not in frame.collect_schema().names():
        raise PermanentError(
            f"shout: column `{config.column}` is not in the table (it has: {', '.join(frame.collect_schema().names())})"
        )
    return frame.with_columns(pl.col(config.column).cast(pl.Utf8).str.to_uppercase())
