"""Tables: read a table, query with DuckDB SQL, write a table."""

from satellites.tables import read_table, sql, write_table  # noqa: F401
