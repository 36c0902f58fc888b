"""DuckDB connections that never reach the network.

DuckDB would otherwise try to download extensions (httpfs for `s3://`) from the internet; we
switch that off and hand it fsspec filesystems instead, so remote files are read through the
same credentials and endpoints as everything else.
"""

from __future__ import annotations

from typing import Iterable

import duckdb
import fsspec


def connect(database: str = ":memory:", *, read_only: bool = False, urls: Iterable[str] = ()) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(database, read_only=read_only)
    con.execute("set autoinstall_known_extensions = false")
    con.execute("set autoload_known_extensions = false")
    protocols = {u.split("://", 1)[0] for u in urls if "://" in u and not u.startswith("file://")}
    for protocol in sorted(protocols):
        con.register_filesystem(fsspec.filesystem(protocol))
    return con
