"""The per-row result cache: a finished row is never computed (or paid for) twice.

Keyed by sha256(satellite id, version, config, row content); one SQLite file per cluster in
WAL mode, each result committed as soon as it finishes, so a crash loses no finished row.
With EXO_ROW_CACHE_URL=postgresql://... every worker shares one PostgreSQL table instead
(row_cache_pg.py): for hosts with no shared disk.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from typing import Any, Iterable, Mapping

from exo_dagster.sdk import paths
from exo_dagster.sdk.hashing import sha256_text


def cache_dir() -> str:
    return os.environ.get("EXO_CACHE_DIR") or os.path.join(paths.data_dir(), "cache")


ROW_CACHE_URL = "EXO_ROW_CACHE_URL"


def cache_file(cluster_job_name: str, directory: str | None = None) -> str:
    """Where a cluster's finished rows live: a SQLite file, or `postgresql://...#<job>` under EXO_ROW_CACHE_URL."""
    url = os.environ.get(ROW_CACHE_URL)
    if url and directory is None:
        return f"{url}#{cluster_job_name}"
    return os.path.join(directory or cache_dir(), f"{cluster_job_name}.sqlite")


def open_cache(location: str):
    """The cache at `location` (from cache_file): PostgreSQL for a `postgresql://` URL, else SQLite."""
    from exo_dagster.sdk import row_cache_pg

    return row_cache_pg.PostgresRowCache(location) if row_cache_pg.is_postgres(location) else RowCache(location)


def exists(location: str) -> bool:
    from exo_dagster.sdk import row_cache_pg

    return row_cache_pg.is_postgres(location) or os.path.exists(location)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


canonical = _canonical


def row_key(satellite_id: str, version: str, config: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    """The identity of one unit of per-row work; also the idempotency key sent to side-effect targets."""
    text = _canonical([satellite_id, version, config, row])
    return sha256_text(text)


class RowCache:
    """Finished per-row results of one cluster; safe to use from many threads of one step."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(path, check_same_thread=False, timeout=60, isolation_level=None)
        self._con.execute("pragma journal_mode=wal")
        self._con.execute("pragma synchronous=normal")
        self._con.execute("create table if not exists rows (key text primary key, step text, result text not null)")

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        with self._lock:
            for start in range(0, len(keys), 900):
                chunk = keys[start:start + 900]
                marks = ",".join("?" * len(chunk))
                for key, result in self._con.execute(f"select key, result from rows where key in ({marks})", chunk):
                    found[key] = json.loads(result)
        return found

    def put(self, key: str, step: str, result: Mapping[str, Any]) -> None:
        """Commit one finished row now (WAL: cheap, and durable across a process crash)."""
        with self._lock:
            self._con.execute("insert or replace into rows values (?, ?, ?)", (key, step, _canonical(result)))

    def count(self, step: str | None = None) -> int:
        with self._lock:
            if step is None:
                return self._con.execute("select count(*) from rows").fetchone()[0]
            return self._con.execute("select count(*) from rows where step = ?", (step,)).fetchone()[0]

    def clear(self, step: str | None = None) -> int:
        with self._lock:
            if step is None:
                return self._con.execute("delete from rows").rowcount
            return self._con.execute("delete from rows where step = ?", (step,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> "RowCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
