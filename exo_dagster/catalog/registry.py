"""The satellite catalog: satellites by id and alias, and the default catalog of this installation.

The default catalog holds every satellite the entry-point group `exo_dagster.satellites` names
(the built-ins register through it too, see pyproject.toml) plus every `@satellite` declared in
this process (`exo_dagster.sdk.DECLARED`).
"""

from __future__ import annotations

import difflib
from typing import Iterable

from exo_dagster.sdk.satellite import DECLARED, SATELLITE_ID, SatelliteConfig, SatelliteDef, satellite  # noqa: F401
from exo_dagster.spec.lookup import UnknownSatellite


class Registry:
    """Satellites by id and alias; `get` resolves `uses:` strings, versions included."""

    def __init__(self, defs: Iterable[SatelliteDef] = ()):
        self._by_id: dict[str, SatelliteDef] = {}
        for d in defs:
            self.add(d)

    def add(self, definition: SatelliteDef) -> SatelliteDef:
        for name in (definition.id, *definition.aliases):
            if not SATELLITE_ID.match(name) or "@" in name:
                raise ValueError(f"satellite id must look like satellite/<project>/<name>, got {name!r}")
            if name in self._by_id and self._by_id[name] is not definition:
                raise ValueError(f"satellite {name!r} is already registered")
            self._by_id[name] = definition
        return definition

    def ids(self) -> list[str]:
        return sorted(self._by_id)

    def __contains__(self, uses: str) -> bool:
        try:
            self.get(uses)
        except UnknownSatellite:
            return False
        return True

    def get(self, uses: str) -> SatelliteDef:
        match = SATELLITE_ID.match(uses)
        base = uses.split("@", 1)[0]
        if not match or base not in self._by_id:
            raise UnknownSatellite(uses, self.suggest(base))
        definition = self._by_id[base]
        if match.group(3) and match.group(3) != definition.version:
            raise UnknownSatellite(uses, [f"{base}@{definition.version}"], reason="unknown version of satellite")
        return definition

    def suggest(self, uses: str) -> list[str]:
        """Closest known ids, compared on the satellite name (the shared prefix would match everything)."""
        by_name: dict[str, list[str]] = {}
        for known in self.ids():
            by_name.setdefault(known.rsplit("/", 1)[-1], []).append(known)
        name = uses.rsplit("/", 1)[-1]
        close = difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.6)
        project = uses.split("/")[1] if uses.count("/") >= 2 else ""
        ranked = [i for n in close for i in sorted(by_name[n], key=lambda i: i.split("/")[1] != project)]
        return ranked[:3]

    def merged(self, other: "Registry") -> "Registry":
        out = Registry()
        out._by_id = {**self._by_id, **other._by_id}
        return out


REGISTRY = Registry()
_synced = 0


def default_registry() -> Registry:
    """The installation's catalog: entry-point satellites, then every satellite declared so far."""
    global _synced
    from exo_dagster.catalog import discovery

    discovery.load_entry_points()
    while _synced < len(DECLARED):
        definition = DECLARED[_synced]
        _synced += 1
        REGISTRY.add(definition)
    return REGISTRY


builtin_registry = default_registry  # the name the first wave used
