"""`exo query` results as text: an aligned table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
import math
from typing import Any

from exo_dagster.storage.views_query import QueryResult


def render(result: QueryResult, fmt: str, *, max_rows: int = 1000) -> str:
    if fmt == "csv":
        return as_csv(result)
    if fmt == "json":
        return as_json(result)
    return as_table(result, max_rows=max_rows)


def as_table(result: QueryResult, *, max_rows: int = 1000) -> str:
    """Columns padded to their widest value, numbers right-aligned, NULL for missing values; then the row count."""
    shown = result.rows[: max(max_rows, 0)]
    cells = [[_text(v) for v in row] for row in shown]
    numeric = [
        all(
            isinstance(row[i], (int, float, decimal.Decimal)) and not isinstance(row[i], bool)
            for row in shown
            if row[i] is not None
        )
        and any(row[i] is not None for row in shown)
        for i in range(len(result.columns))
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(list(result.columns)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    n = len(result.rows)
    footer = f"({n} row{'s' if n != 1 else ''})"
    if n > len(shown):
        footer = f"({n} rows, the first {len(shown)} shown; add `limit`, or use --format csv for all)"
    return "\n".join(out + [footer]) + "\n"


def as_csv(result: QueryResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(["" if v is None else _text(v) for v in row])
    return buffer.getvalue()


def as_json(result: QueryResult) -> str:
    records = [{c: _json_value(v) for c, v in zip(result.columns, row)} for row in result.rows]
    return json.dumps(records, indent=2, ensure_ascii=False) + "\n"


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(_json_value(value), ensure_ascii=False)
    return str(value)


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)
