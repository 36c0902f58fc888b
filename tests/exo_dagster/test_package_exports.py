"""`import exo_dagster` names its lazy exports for type checkers too: a literal `__all__` and `TYPE_CHECKING`
imports, both equal to `_EXPORTS`, what it loads at run time."""

from __future__ import annotations

import ast
import inspect

import exo_dagster


def test_all_lists_exactly_the_lazy_exports_and_each_resolves():
    assert sorted(exo_dagster.__all__) == sorted(exo_dagster._EXPORTS)
    missing = [name for name in exo_dagster.__all__ if getattr(exo_dagster, name, None) is None]
    assert not missing, f"exo_dagster exports names that do not load: {missing}"


def test_the_type_checker_imports_each_export_from_where_it_loads():
    tree = ast.parse(inspect.getsource(exo_dagster))
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    imported = {
        alias.asname or alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imported == exo_dagster._EXPORTS
