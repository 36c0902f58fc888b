"""What writing and reading finished rows needs of a row cache, whichever backs it.

`row_cache.open_cache` gives the SQLite `RowCache` or the PostgreSQL `PostgresRowCache`; `row_map` and
`row_writer` take either through this protocol, so neither names a backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class RowStore(Protocol):
    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        """The stored results of those of `keys` the cache holds (after the last `merge`)."""
        ...

    def put_many(self, items: list[tuple[str, str, str]]) -> None:
        """Commit (key, step, result JSON) rows in one transaction."""
        ...

    def merge(self) -> None:
        """Make the rows committed by `put_many` visible to `get_many`."""
        ...
