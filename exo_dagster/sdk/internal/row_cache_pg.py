"""The row cache in PostgreSQL: for workers on several hosts with no shared disk.

A chunk retried on another Celery worker must not redo the rows a dead worker finished, so every
worker reads and writes one table (`exo_row_cache`, keyed by cluster and row key). Same interface
and semantics as the SQLite RowCache: each result is committed the moment it finishes.
Selected by EXO_ROW_CACHE_URL=postgresql://... (exo_dagster.sdk.row_cache.cache_file).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from exo_dagster.errors import ExoBug
from exo_dagster.sdk.internal.row_result import result_text

TABLE = "exo_row_cache"
_CREATE_LOCK = 0x65786F72  # advisory lock id: concurrent `create table if not exists` races in PostgreSQL
_BATCH = 1000


def split_location(location: str) -> tuple[str, str]:
    """`postgresql://...#<cluster job name>` -> (connection URL, cluster)."""
    url, _, cluster = location.partition("#")
    return url, cluster


def single_value(cursor: Any) -> Any:
    """The value of a query that returns exactly one row of one column (`select count(*)`, `to_regclass`)."""
    row = cursor.fetchone()
    if row is None:
        raise ExoBug("a single-value query returned no row")
    return row[0]


def is_postgres(location: str | None) -> bool:
    return bool(location) and location.split("://", 1)[0] in ("postgresql", "postgres")


class PostgresRowCache:
    """Finished per-row results of one cluster, shared by every worker; safe from many threads of one step."""

    def __init__(self, location: str):
        import psycopg2  # the `postgres` extra (dagster-postgres needs it too)

        self.path = location
        url, self.cluster = split_location(location)
        self._lock = threading.Lock()
        self._con = psycopg2.connect(url, connect_timeout=10)
        self._con.autocommit = True
        with self._con.cursor() as cur:
            # A commit is on the server once it returns (a worker killed a moment later loses nothing), without
            # waiting for the WAL flush (~3 ms a row here): as SQLite's `synchronous=normal`, only a crash of the
            # database server itself may forget the last moment's rows, which are then asked for again.
            cur.execute("set synchronous_commit = off")
            cur.execute(f"select to_regclass('{TABLE}')")
            if single_value(cur) is None:
                self._con.autocommit = False
                cur.execute("select pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
                cur.execute(
                    f"create table if not exists {TABLE} (cluster text not null, key text not null, "
                    "step text, result text not null, primary key (cluster, key))"
                )
                cur.execute(f"create index if not exists {TABLE}_step on {TABLE} (cluster, step)")
                self._con.commit()
                self._con.autocommit = True

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        with self._lock, self._con.cursor() as cur:
            for start in range(0, len(keys), _BATCH):
                cur.execute(
                    f"select key, result from {TABLE} where cluster = %s and key = any(%s)",
                    (self.cluster, keys[start : start + _BATCH]),
                )
                for key, result in cur.fetchall():
                    found[key] = json.loads(result)
        return found

    def put(self, key: str, step: str, result: Mapping[str, Any]) -> None:
        """Commit one finished row now (autocommit): a worker killed a moment later loses nothing finished."""
        with self._lock, self._con.cursor() as cur:
            cur.execute(
                f"insert into {TABLE} values (%s, %s, %s, %s) on conflict (cluster, key) "
                "do update set step = excluded.step, result = excluded.result",
                (self.cluster, key, step, result_text(result)),
            )

    def put_many(self, items: list[tuple[str, str, str]]) -> None:
        """Commit (key, step, result JSON) rows in one transaction (sdk/internal/row_writer.py's group commits)."""
        if not items:
            return
        from psycopg2.extras import execute_values

        with self._lock, self._con.cursor() as cur:
            self._con.autocommit = False
            try:
                execute_values(
                    cur,
                    f"insert into {TABLE} values %s on conflict (cluster, key) "
                    "do update set step = excluded.step, result = excluded.result",
                    [(self.cluster, key, step, result) for key, step, result in items],
                )
                self._con.commit()
            except BaseException:
                self._con.rollback()
                raise
            finally:
                self._con.autocommit = True

    def merge(self) -> None:
        """Nothing to merge: rows go straight into the indexed table (the SQLite cache stages them)."""

    def count(self, step: str | None = None) -> int:
        with self._lock, self._con.cursor() as cur:
            if step is None:
                cur.execute(f"select count(*) from {TABLE} where cluster = %s", (self.cluster,))
            else:
                cur.execute(f"select count(*) from {TABLE} where cluster = %s and step = %s", (self.cluster, step))
            return single_value(cur)

    def clear(self, step: str | None = None) -> int:
        with self._lock, self._con.cursor() as cur:
            if step is None:
                cur.execute(f"delete from {TABLE} where cluster = %s", (self.cluster,))
            else:
                cur.execute(f"delete from {TABLE} where cluster = %s and step = %s", (self.cluster, step))
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> PostgresRowCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
