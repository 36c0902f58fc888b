"""The satellite catalog: satellites by id and alias, and the default catalog of this installation.

The default catalog holds every satellite the entry-point group `exo_dagster.satellites` names
(the built-ins register through it too, see pyproject.toml) plus every `@satellite` declared in
this process (`exo_dagster.sdk.DECLARED`).
"""

from __future__ import annotations

import difflib
import threading
from typing import Iterable

from exo_dagster.sdk.satellite import DECLARED, SATELLITE_ID, SatelliteConfig, SatelliteDef, satellite  # noqa: F401
from exo_dagster.spec.lookup import UnknownSatellite


class DuplicateSatellite(ValueError):
    """Two definitions for one id (or alias); `sources` says where each came from."""

    def __init__(self, name: str, sources: tuple[str, str]):
        first, second = sources
        where = f" (by {first}; again by {second})" if first or second else ""
        super().__init__(f"satellite {name!r} is already registered{where}")
        self.name, self.sources = name, sources


class Registry:
    """Satellites by id and alias; `get` resolves `uses:` strings, versions included.

    It also knows where each satellite comes from (`source`: a distribution, a preset file, a module)
    and what could not be loaded (plugins that failed to import, broken preset files, ids that two
    distributions declare), so an unknown id's error can say why it may be missing.
    """

    def __init__(self, defs: Iterable[SatelliteDef] = ()):
        self._by_id: dict[str, SatelliteDef] = {}
        self._sources: dict[str, str] = {}  # id or alias -> where its definition comes from
        self._conflicts: dict[str, tuple[str, str]] = {}  # id declared twice -> the two sources
        self._unavailable: list[tuple[str | None, str]] = []  # (the id if known, why it did not load)
        for d in defs:
            self.add(d)

    def add(self, definition: SatelliteDef, source: str = "") -> SatelliteDef:
        names = (definition.id, *definition.aliases)
        for name in names:
            if not SATELLITE_ID.match(name) or "@" in name:
                raise ValueError(f"satellite id must look like satellite/<project>/<name>, got {name!r}")
            if name in self._by_id and self._by_id[name] is not definition:
                raise DuplicateSatellite(name, (self._sources.get(name, ""), source))
        for name in names:
            self._by_id[name] = definition
            self._sources[name] = source
        return definition

    def conflict(self, name: str, sources: tuple[str, str]) -> None:
        """`name` is declared by two sources: it resolves to neither, and using it says which two."""
        self._by_id.pop(name, None)
        self._conflicts[name] = sources

    def unavailable(self, message: str, satellite_id: str | None = None) -> None:
        """Record something that did not load: named in the error for `satellite_id` (for any unknown id if None)."""
        entry = (satellite_id, message)
        if entry not in self._unavailable:
            self._unavailable.append(entry)

    def problems(self) -> list[str]:
        """Every plugin, preset file and id that could not be loaded, one line each."""
        return [m for _, m in self._unavailable] + [self._conflict_note(n) for n in sorted(self._conflicts)]

    def source(self, uses: str) -> str:
        """Where the satellite `uses` names comes from: a distribution (`exo-dagster`, `exo-acme-satellites`),
        `preset <file>`, or `module <name>` for one declared in this process; raises UnknownSatellite."""
        definition = self.get(uses)
        return self._sources.get(definition.id) or f"module {getattr(definition.fn, '__module__', '?')}"

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
        if base in self._conflicts:
            raise UnknownSatellite(uses, [], reason="ambiguous satellite", note=self._conflict_note(base))
        if not match or base not in self._by_id:
            raise UnknownSatellite(uses, self.suggest(base), note=self._note(base))
        definition = self._by_id[base]
        if match.group(3) and match.group(3) != definition.version:
            raise UnknownSatellite(uses, [f"{base}@{definition.version}"], reason="unknown version of satellite")
        return definition

    def _note(self, base: str) -> str:
        return "; ".join(m for known, m in self._unavailable if known is None or known == base)

    def _conflict_note(self, name: str) -> str:
        first, second = self._conflicts[name]
        if first == second:
            return f"`{name}` is declared twice by {first}: fix that distribution"
        return f"`{name}` is declared by both {first} and {second}: uninstall one of them"

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
        out._sources = {**self._sources, **other._sources}
        out._conflicts = {**self._conflicts, **other._conflicts}
        out._unavailable = list(dict.fromkeys(self._unavailable + other._unavailable))
        return out


REGISTRY = Registry()
_synced = 0
_sync_lock = threading.RLock()  # re-entrant: a plugin may ask while being loaded; threads of one process (a code server, a test) may ask at once
_reported: set[tuple[str, str, str]] = set()


def default_registry() -> Registry:
    """The installation's catalog: entry-point satellites, then every satellite declared so far.

    A plugin that failed to import contributes nothing and is named in unknown-satellite errors; an id
    that two distributions declare resolves to neither and its error names both."""
    with _sync_lock:
        return _sync()


def _sync() -> Registry:
    global _synced
    from exo_dagster.catalog import discovery

    plugins = discovery.load_entry_points()
    for plugin in plugins:
        key = (plugin.dist, plugin.name, plugin.value)
        if plugin.error is not None and key not in _reported:
            _reported.add(key)
            REGISTRY.unavailable(f"plugin {plugin.label} failed to load: {plugin.error}")
    while _synced < len(DECLARED):
        definition = DECLARED[_synced]
        _synced += 1
        owner = next((p for p in plugins if any(d is definition for d in p.declared)), None) or \
            next((p for p in plugins if p.provides(definition)), None)
        if owner is not None and owner.error is not None:
            continue  # declared before its plugin's import failed: the plugin contributes nothing
        try:
            REGISTRY.add(definition, source=owner.dist if owner is not None else "")
        except DuplicateSatellite as exc:
            REGISTRY.conflict(exc.name, (_described(exc.sources[0]), _described(exc.sources[1])))
    return REGISTRY


def _described(source: str) -> str:
    return f"distribution `{source}`" if source else "a module of this process"


builtin_registry = default_registry  # the name the first wave used
