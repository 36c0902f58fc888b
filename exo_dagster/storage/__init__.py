"""Where step outputs live: the Parquet IO manager (with source references) and the DuckDB catalog of views."""
