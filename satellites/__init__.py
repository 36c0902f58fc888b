"""The built-in satellite catalog: importing this package registers every satellite."""

from . import get_files, read_table, sql, write_table  # noqa: F401
