"""Finding satellites that other distributions ship: the entry-point group `exo_dagster.satellites`.

A distribution lists modules (or `module:function` objects) in that group; loading one imports it,
which declares its satellites with `@satellite`. The built-in catalog registers the same way
(pyproject.toml), so a third-party satellite needs no change to exo.
"""

from __future__ import annotations

from importlib.metadata import entry_points

GROUP = "exo_dagster.satellites"

_loaded: dict[str, str] = {}  # entry point "name = value" -> distribution name


def load_entry_points() -> dict[str, str]:
    """Import every module the group names, once per process; returns what was loaded (-> distribution)."""
    for ep in entry_points(group=GROUP):
        key = f"{ep.name} = {ep.value}"
        if key in _loaded:
            continue
        _loaded[key] = ep.dist.name if ep.dist is not None else "?"
        ep.load()
    return dict(_loaded)
