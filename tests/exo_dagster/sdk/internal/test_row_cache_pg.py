"""The PostgreSQL row cache (EXO_ROW_CACHE_URL): the SQLite cache's interface and semantics, shared by
every worker. Against a real PostgreSQL (127.0.0.1:5432 unless EXO_TEST_POSTGRES_URL; skipped when absent)."""

from __future__ import annotations

import polars as pl
import pytest

from exo_dagster.sdk import row_cache
from exo_dagster.sdk.internal.row_cache_pg import PostgresRowCache
from exo_dagster.sdk.row_map import RowStats, map_rows
from tests.exo_dagster.scaleout_support import pg_database, pg_url


def test_cache_file_names_the_postgres_url_when_set(monkeypatch, tmp_path):
    monkeypatch.delenv(row_cache.ROW_CACHE_URL, raising=False)
    monkeypatch.setenv("EXO_CACHE_DIR", str(tmp_path))
    assert row_cache.cache_file("acme__x") == str(tmp_path / "acme__x.sqlite")
    assert isinstance(row_cache.open_cache(row_cache.cache_file("acme__x")), row_cache.RowCache)
    monkeypatch.setenv(row_cache.ROW_CACHE_URL, "postgresql://u@h:5432/d")
    assert row_cache.cache_file("acme__x") == "postgresql://u@h:5432/d#acme__x"


def test_two_connections_share_rows_per_cluster_and_step():
    with pg_database() as db:
        url = pg_url(db)
        with (
            PostgresRowCache(f"{url}#c1") as a,
            PostgresRowCache(f"{url}#c1") as b,
            PostgresRowCache(f"{url}#c2") as other,
        ):
            a.put("k1", "s1", {"v": 1})
            a.put("k2", "s2", {"v": "two"})
            a.put("k1", "s1", {"v": 11})  # replaced, as SQLite's insert or replace
            assert b.get_many(["k1", "k2", "k3", "k1"]) == {"k1": {"v": 11}, "k2": {"v": "two"}}
            assert other.get_many(["k1"]) == {}  # another cluster's rows are not this one's
            assert (b.count(), b.count("s1"), other.count()) == (2, 1, 0)
            assert b.clear("s1") == 1 and a.get_many(["k1", "k2"]) == {"k2": {"v": "two"}}
            assert a.clear() == 1 and b.count() == 0


def test_get_many_batches_past_one_statement_and_map_rows_skips_finished_rows():
    with pg_database() as db:
        location = f"{pg_url(db)}#bench"
        with row_cache.open_cache(location) as cache:
            assert isinstance(cache, PostgresRowCache)
            for i in range(2500):
                cache.put(f"k{i}", "s", {"i": i})
            assert len(cache.get_many([f"k{i}" for i in range(3000)])) == 2500
            calls: list[int] = []
            rows = pl.DataFrame({"x": list(range(50))})
            first = map_rows(
                lambda r, k: calls.append(r["x"]) or {"y": r["x"] * 2},
                rows.head(20),
                identity=("s", "1", {}),
                step="m",
                cache=cache,
            )
            stats = RowStats()
            second = map_rows(
                lambda r, k: calls.append(r["x"]) or {"y": r["x"] * 2},
                rows,
                identity=("s", "1", {}),
                step="m",
                cache=cache,
                stats=stats,
            )
        assert first["y"].to_list() == [2 * i for i in range(20)]
        assert second["y"].to_list() == [2 * i for i in range(50)]
        assert sorted(calls) == list(range(50))  # the 20 finished rows were not computed again
        assert (stats.cached, stats.computed) == (20, 30)


@pytest.mark.slow
def test_exo_cache_clear_forgets_rows_in_postgres(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    with pg_database() as db:
        url = pg_url(db)
        with PostgresRowCache(f"{url}#acme__ticket_triage") as rows, PostgresRowCache(f"{url}#other__one") as other:
            rows.put("k1", "labels", {"a": 1})
            rows.put("k2", "tickets", {"a": 2})
            other.put("k1", "labels", {"a": 3})
        env = {**os.environ, row_cache.ROW_CACHE_URL: url, "EXO_CACHE_DIR": str(tmp_path)}
        exo = str(Path(sys.executable).parent / "exo")
        step = subprocess.run(
            [exo, "cache", "clear", "acme/ticket-triage", "--step", "labels"], env=env, capture_output=True, text=True
        )
        assert step.returncode == 0 and "cleared 1 cached row(s) of acme__ticket_triage step labels" in step.stdout, (
            step.stderr
        )
        with PostgresRowCache(f"{url}#acme__ticket_triage") as rows, PostgresRowCache(f"{url}#other__one") as other:
            assert rows.get_many(["k1", "k2"]) == {"k2": {"a": 2}} and other.count() == 1  # another cluster's rows stay
        assert not list(tmp_path.iterdir())  # no SQLite file was made
