"""Output metadata by Dagster's conventions (dagster/row_count, dagster/column_schema, dagster/uri,
dagster/table_name), so the UI shows a row count, a column table and where the data is."""

from __future__ import annotations

from typing import Any

import dagster as dg

from exo_dagster import keys


def column_schema(schema: Any) -> dg.TableSchema:
    """Dagster's column table (`dagster/column_schema`) from {column: type} (a Polars schema or plain dict)."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name=str(name), type=str(dtype)) for name, dtype in dict(schema).items()]
    )


def table_metadata(given: Any, rows: int, schema: Any, paths_: list[str]) -> dict[str, Any]:
    """Output metadata by Dagster's conventions: row count, column schema, where it is stored.
    What the step reported itself (`given`: write-table reports the table it wrote) is kept."""
    given = dict(given or {})
    metadata: dict[str, Any] = {keys.ROW_COUNT: rows, keys.COLUMN_SCHEMA: column_schema(schema)}
    if keys.TABLE_NAME not in given:
        metadata[keys.URI] = paths_[0] if len(paths_) == 1 else ", ".join(paths_)
    return {k: v for k, v in metadata.items() if k not in given}
