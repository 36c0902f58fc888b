"""The satellite catalog: satellites by id and alias, and the default catalog of this installation.

The default catalog holds every satellite the entry-point group `exo_dagster.satellites` names
(the built-ins register through it too, see pyproject.toml) plus every `@satellite` declared in
this process (`exo_dagster.sdk.DECLARED`). It is lazy: an id a distribution indexes
(`exo_dagster.satellite_index`, see discovery.py) is imported when first looked up, so loading a
cluster costs the satellite packages it uses, not all of them; whatever lists the whole catalog
imports everything first, and an id the index does not answer is looked up in the whole catalog.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterable

from exo_dagster.errors import UserError
from exo_dagster.sdk.satellite import DECLARED, SATELLITE_ID, SatelliteConfig, SatelliteDef, satellite  # noqa: F401
from exo_dagster.spec.lookup import UnknownSatellite


class DuplicateSatellite(UserError, ValueError):
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

    The default catalog and registries merged from it are lazy: `get`, `in`, `source` and `add` import
    only the plugins that index the id; `ids`, `suggest` and `problems` import every plugin first.
    """

    def __init__(self, defs: Iterable[SatelliteDef] = ()):
        self._by_id: dict[str, SatelliteDef] = {}
        self._sources: dict[str, str] = {}  # id or alias -> where its definition comes from
        self._conflicts: dict[str, tuple[str, str]] = {}  # id declared twice -> the two sources
        self._unavailable: list[tuple[str | None, str]] = []  # (the id if known, why it did not load)
        self._version = 0  # bumped by every change: a view compares it with REGISTRY's
        self._lazy = False  # the default catalog or a view of it: lookups may import deferred plugins
        self._own: Registry | None = None  # a view: its own satellites, over the default catalog's (see merged)
        self._seen = -1  # a view: the default catalog's version it reflects
        for d in defs:
            self.add(d)

    def add(self, definition: SatelliteDef, source: str = "") -> SatelliteDef:
        names = (definition.id, *definition.aliases)
        for name in names:
            if not SATELLITE_ID.match(name) or "@" in name:
                raise ValueError(f"satellite id must look like satellite/<project>/<name>, got {name!r}")
        for name in names:
            self._load(name)  # a deferred plugin may declare it: a duplicate is one whether imported yet or not
        return self._add(definition, source)

    def _add(self, definition: SatelliteDef, source: str) -> SatelliteDef:
        names = (definition.id, *definition.aliases)
        for name in names:
            if name in self._by_id and self._by_id[name] is not definition:
                raise DuplicateSatellite(name, (self._sources.get(name, ""), source))
        for registry in self._layers():
            for name in names:
                registry._by_id[name] = definition
                registry._sources[name] = source
            registry._version += 1
        return definition

    def conflict(self, name: str, sources: tuple[str, str]) -> None:
        """`name` is declared by two sources: it resolves to neither, and using it says which two."""
        for registry in self._layers():
            registry._by_id.pop(name, None)
            registry._conflicts[name] = sources
            registry._version += 1

    def unavailable(self, message: str, satellite_id: str | None = None) -> None:
        """Record something that did not load: named in the error for `satellite_id` (for any unknown id if None)."""
        entry = (satellite_id, message)
        for registry in self._layers():
            if entry not in registry._unavailable:
                registry._unavailable.append(entry)
                registry._version += 1

    def problems(self, *, load: bool = True) -> list[str]:
        """Every plugin, preset file and id that could not be loaded, one line each. `load=False`: only what is
        known without importing more plugins (a code location's warnings: a plugin it does not use is not
        imported, so it cannot have failed yet)."""
        if load:
            self._load(None)
        else:
            self._refresh()
        return [m for _, m in self._unavailable] + [self._conflict_note(n) for n in sorted(self._conflicts)]

    def source(self, uses: str) -> str:
        """Where the satellite `uses` names comes from: a distribution (`exo-dagster`, `exo-acme-satellites`),
        `preset <file>`, or `module <name>` for one declared in this process; raises UnknownSatellite."""
        definition = self.get(uses)
        return self._sources.get(definition.id) or f"module {getattr(definition.fn, '__module__', '?')}"

    def ids(self) -> list[str]:
        self._load(None)
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
        self._load(base)
        if base not in self._conflicts and base not in self._by_id:
            self._load(None)  # not indexed, or the index is wrong: the whole catalog answers, as without an index
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

    def merged(self, other: Registry) -> Registry:
        """This catalog with `other`'s satellites over it. Merged from the default catalog (or a view of it),
        the result is a lazy view: the catalog's satellites, imported on use, under its own."""
        if other._lazy:  # the default catalog would sit above this one's satellites: merge both whole
            self._load(None)
            other._load(None)
        elif self._lazy:
            self._refresh()
            out = Registry()
            out._lazy = True
            out._own = (self._own or Registry())._merged(other)
            out._rebuild()
            return out
        return self._merged(other)

    def _merged(self, other: Registry) -> Registry:
        out = Registry()
        out._by_id = {**self._by_id, **other._by_id}
        out._sources = {**self._sources, **other._sources}
        out._conflicts = {**self._conflicts, **other._conflicts}
        out._unavailable = list(dict.fromkeys(self._unavailable + other._unavailable))
        return out

    # -- laziness: the default catalog imports deferred plugins on use; a view follows it

    def _layers(self) -> list[Registry]:
        """Where a change goes: a view keeps its own changes apart, so that following the catalog keeps them."""
        return [self] if self._own is None else [self, self._own]

    def _load(self, name: str | None) -> None:
        """Import the deferred plugins that may provide `name` (every one for None), then follow the catalog."""
        if not self._lazy:
            return
        from exo_dagster.catalog import discovery

        if discovery.pending(name):
            with _sync_lock:
                if discovery.pending(name):
                    discovery.load_for(name)
                    _sync()
        self._refresh()

    def _refresh(self) -> None:
        if self._own is not None and self._seen != REGISTRY._version:
            with _sync_lock:
                self._rebuild()

    def _rebuild(self) -> None:
        """A view is `REGISTRY.merged(own)` as of now: recomputed when the catalog has imported more."""
        base, own = REGISTRY, self._own
        assert own is not None
        self._by_id = {**base._by_id, **own._by_id}  # new dicts: a reader in another thread sees the old or the new
        self._sources = {**base._sources, **own._sources}
        self._conflicts = {**base._conflicts, **own._conflicts}
        self._unavailable = list(dict.fromkeys(base._unavailable + own._unavailable))
        self._seen = base._version  # last: until here, another thread's _refresh waits for the lock


REGISTRY = Registry()
REGISTRY._lazy = True
_synced = 0
_sync_lock = (
    threading.RLock()
)  # re-entrant: a plugin may ask while being loaded; threads of one process (a code server, a test) may ask at once
_reported: set[tuple[str, str, str]] = set()
_owned: dict[str, set[str]] = {}  # distribution -> the ids and aliases its plugins declared
_index_reported: set[tuple[str, str]] = set()


def default_registry() -> Registry:
    """The installation's catalog: entry-point satellites, then every satellite declared so far.

    Satellites of distributions with an index are imported when first looked up (see the module docstring).
    A plugin that failed to import contributes nothing and is named in unknown-satellite errors; an id
    that two distributions declare resolves to neither and its error names both."""
    with _sync_lock:
        return _sync()


def _sync() -> Registry:
    global _synced
    from exo_dagster.catalog import discovery

    discovery.scan()
    for definition in DECLARED[_synced:]:  # declared by a deferred plugin's module, imported directly: load that plugin
        discovery.load_module_owner(getattr(definition.fn, "__module__", "") or "")
    plugins = discovery.plugins()
    failures = [p for p in plugins if p.error is not None]
    if any((p.dist, p.name, p.value) not in _reported for p in failures):
        for plugin in failures:
            _reported.add((plugin.dist, plugin.name, plugin.value))
            REGISTRY.unavailable(f"plugin {plugin.label} failed to load: {plugin.error}")
        order: dict[tuple[str | None, str], int] = {
            (None, f"plugin {p.label} failed to load: {p.error}"): i for i, p in enumerate(failures)
        }
        # in scan order, whenever each was imported (a new list: readers in other threads never see a half-sorted one)
        REGISTRY._unavailable = sorted(REGISTRY._unavailable, key=lambda entry: order.get(entry, len(order)))
    while _synced < len(DECLARED):
        definition = DECLARED[_synced]
        _synced += 1
        owner = next((p for p in plugins if any(d is definition for d in p.declared)), None) or next(
            (p for p in plugins if p.provides(definition)), None
        )
        if owner is not None and owner.error is not None:
            continue  # declared before its plugin's import failed: the plugin contributes nothing
        if owner is not None:
            _owned.setdefault(owner.dist, set()).update((definition.id, *definition.aliases))
        try:
            REGISTRY._add(definition, source=owner.dist if owner is not None else "")
        except DuplicateSatellite as exc:
            REGISTRY.conflict(exc.name, (_described(exc.sources[0]), _described(exc.sources[1])))
    _check_index(discovery)
    return REGISTRY


def _check_index(discovery) -> None:
    """An index lists exactly the ids its distribution declares; each difference is named once in problems().
    (A wrong index is never a wrong answer: an id not found is looked up in the whole catalog.)"""
    listed: dict[str, set[str]] = {}
    for claim in discovery.claims():
        listed.setdefault(claim.dist, set()).add(claim.name)
        if (
            claim.name not in _owned.get(claim.dist, ())
            and discovery.settled(claim)
            and (claim.dist, claim.name) not in _index_reported
        ):
            _index_reported.add((claim.dist, claim.name))
            REGISTRY.unavailable(
                f"the satellite index of `{claim.dist}` names `{claim.name}` in `{claim.module}`, which "
                f"does not declare it: fix its `{discovery.INDEX_GROUP}` entry points",
                satellite_id=claim.name,
            )
    for dist, names in _owned.items():
        for name in sorted(names - listed.get(dist, names)):
            if (dist, name) not in _index_reported:
                _index_reported.add((dist, name))
                REGISTRY.unavailable(
                    f"`{name}` is declared by `{dist}` but missing from its satellite index "
                    f"(`{discovery.INDEX_GROUP}`): a cluster that uses it imports every plugin",
                    satellite_id=name,
                )


def _described(source: str) -> str:
    return f"distribution `{source}`" if source else "a module of this process"


builtin_registry = default_registry  # the name the first wave used
