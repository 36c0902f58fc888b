"""How a row's result is stored as text, by both row caches (row_cache.py's SQLite, row_cache_pg.py's PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any


def result_text(result: Any) -> str:
    """A row's result as stored: its keys in the satellite's order, so a row served from the cache makes the same
    columns, in the same order, as one computed now (a re-run's output equals the first run's)."""
    return json.dumps(result, separators=(",", ":"), default=str, ensure_ascii=False)
