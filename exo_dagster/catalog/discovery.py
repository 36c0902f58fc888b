"""Finding satellites that other distributions ship: the entry-point group `exo_dagster.satellites`.

A distribution lists modules (or `module:function` objects) in that group; loading one imports it,
which declares its satellites with `@satellite`. The built-in catalog registers the same way
(pyproject.toml), so a third-party satellite needs no change to exo.

A distribution may also index its ids in the group `exo_dagster.satellite_index` (entry name: a
satellite id or alias, value: the module that declares it). Its plugins are then imported only when
something asks for one of those ids (`load_for`), so a code location pays for the satellites its
clusters use, not for the whole catalog. A distribution without an index is imported at once.

A plugin whose import fails does not take the catalog down: the failure is recorded (distribution,
entry point, the exception's message), the satellites it declared before failing are left out, and
the catalog names it where a cluster uses an id nobody provides.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from exo_dagster.sdk.satellite import DECLARED, SatelliteDef

GROUP = "exo_dagster.satellites"
INDEX_GROUP = "exo_dagster.satellite_index"

Key = tuple[str, str, str]  # (distribution, entry point name, value)


@dataclass(frozen=True)
class Plugin:
    """One entry point of the group, loaded (or not) in this process."""

    name: str  # the entry point's name
    value: str  # `module` or `module:attr`
    dist: str  # the distribution that declares it ("?" when unknown)
    error: str | None = None  # "ExceptionType: message" when importing it failed
    declared: tuple[SatelliteDef, ...] = ()  # the satellites its import declared

    @property
    def module(self) -> str:
        return self.value.split(":", 1)[0].strip()

    @property
    def label(self) -> str:
        return f"`{self.dist}` (entry point `{self.name} = {self.value}`)"

    def provides(self, definition: SatelliteDef) -> bool:
        """Declared by this plugin's import, or (declared before it was loaded) in its module or below."""
        if any(d is definition for d in self.declared):
            return True
        return _covers(self.module, getattr(definition.fn, "__module__", "") or "")


@dataclass(frozen=True)
class Claim:
    """One index entry: distribution `dist` says `module` declares satellite id (or alias) `name`."""

    name: str
    dist: str
    module: str


_plugins: dict[Key, Plugin] = {}  # what loading each entry point did
_deferred: dict[Key, EntryPoint] = {}  # entry points of indexed distributions, not imported yet
_order: dict[Key, int] = {}  # scan order: plugins are listed (and their failures named) in it
_claims: dict[str, list[Claim]] = {}  # id or alias -> the index entries naming it
_scanned = False


def scan(rescan: bool = False) -> list[Plugin]:
    """Read both groups once per process and import the plugins of distributions without an index;
    returns the plugins loaded so far. `entry_points()` reads every distribution's metadata (5-30 ms)
    and the catalog is asked for on every parse; `rescan=True` looks again, e.g. after an install."""
    global _scanned
    if _scanned and not rescan:
        return plugins()
    _scanned = True
    found = entry_points()
    for ep in found.select(group=INDEX_GROUP):
        claim = Claim(ep.name, _dist(ep), ep.value.split(":", 1)[0].strip())
        if claim not in _claims.get(claim.name, []):
            _claims.setdefault(claim.name, []).append(claim)
    indexed = {c.dist for claims in _claims.values() for c in claims}
    for ep in found.select(group=GROUP):
        key = (_dist(ep), ep.name, ep.value)
        if key in _plugins or key in _deferred:
            continue
        _order[key] = len(_order)
        if key[0] in indexed:
            _deferred[key] = ep
        else:
            _load(key, ep)
    return plugins()


def load_for(name: str | None) -> list[Plugin]:
    """Import the deferred plugins that the index says provide `name` (all of them for None); returns every
    plugin loaded so far. A claim names a module: the distribution's entry points at or above it are
    imported, or all of its entry points when none is."""
    for key in list(_deferred) if name is None else [k for c in _claims.get(name, ()) for k in _keys(c)]:
        ep = _deferred.pop(
            key, None
        )  # popped first: a plugin that asks for the catalog while loading is not loaded twice
        if ep is not None:
            _load(key, ep)
    return plugins()


def load_module_owner(module: str) -> None:
    """Load the deferred plugins whose module is `module` or above it: it declared a satellite without
    them (imported directly, e.g. by a test), so their import is already done and costs nothing."""
    for key in [k for k in _deferred if _covers(_module(k), module)]:
        ep = _deferred.pop(key, None)
        if ep is not None:
            _load(key, ep)


def pending(name: str | None) -> bool:
    """Whether a deferred plugin may provide `name` (for None: whether any plugin is deferred)."""
    if name is None or not _deferred:
        return bool(_deferred)
    return any(_keys(c) for c in _claims.get(name, ()))


def claims() -> list[Claim]:
    return [c for claims in tuple(_claims.values()) for c in claims]


def settled(claim: Claim) -> bool:
    """Every entry point this claim points at is loaded, without error: its module has declared what it will."""
    keys = _covering(claim)
    return not any(k in _deferred for k in keys) and all(k in _plugins and _plugins[k].error is None for k in keys)


def plugins() -> list[Plugin]:
    """The plugins loaded so far, failed ones included, in scan order."""
    return [_plugins[k] for k in sorted(_plugins, key=lambda k: _order.get(k, len(_order)))]


def failed() -> list[Plugin]:
    """Plugins whose import raised, in scan order."""
    return [p for p in plugins() if p.error is not None]


def _load(key: Key, ep: EntryPoint) -> None:
    before = len(DECLARED)
    error = None
    try:
        ep.load()
    except (Exception, SystemExit) as exc:  # a broken plugin is reported, never fatal
        message = " ".join(str(exc).split())
        error = f"{type(exc).__name__}: {message[:300]}" if message else type(exc).__name__
    dist, name, value = key
    _plugins[key] = Plugin(name, value, dist, error, tuple(DECLARED[before:]))


def _keys(claim: Claim) -> list[Key]:
    """The deferred entry points to import for `claim`."""
    return [k for k in _covering(claim) if k in _deferred]


def _covering(claim: Claim) -> list[Key]:
    """The distribution's entry points whose module is the claim's or above it; all of them when none is."""
    mine = [k for k in tuple(_order) if k[0] == claim.dist]  # a snapshot: another thread may be scanning
    return [k for k in mine if _covers(_module(k), claim.module)] or mine


def _module(key: Key) -> str:
    return key[2].split(":", 1)[0].strip()


def _covers(package: str, module: str) -> bool:
    return bool(module) and (module == package or module.startswith(package + "."))


_names: dict[int, tuple[object, str]] = {}  # id(distribution) -> (it, its name): kept alive, so the id stays its own


def _dist(ep: EntryPoint) -> str:
    """The distribution's name, read once per distribution: `Distribution.name` parses its whole METADATA file
    (the README included, about 6 ms for exo-dagster's) on every call, and a scan asks once per entry point."""
    dist = ep.dist
    if dist is None:
        return "?"
    known = _names.get(id(dist))
    if known is None or known[0] is not dist:
        known = _names[id(dist)] = (dist, dist.name)
    return known[1]
