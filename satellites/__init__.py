"""The built-in satellite catalog, by domain. Each domain registers through the entry-point group
`exo_dagster.satellites` (pyproject.toml); importing a domain declares its satellites."""
