"""Finding satellites that other distributions ship: the entry-point group `exo_dagster.satellites`.

A distribution lists modules (or `module:function` objects) in that group; loading one imports it,
which declares its satellites with `@satellite`. The built-in catalog registers the same way
(pyproject.toml), so a third-party satellite needs no change to exo.

A plugin whose import fails does not take the catalog down: the failure is recorded (distribution,
entry point, the exception's message), the satellites it declared before failing are left out, and
the catalog names it where a cluster uses an id nobody provides.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

from exo_dagster.sdk.satellite import DECLARED, SatelliteDef

GROUP = "exo_dagster.satellites"


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
        module = getattr(definition.fn, "__module__", "") or ""
        return module == self.module or module.startswith(self.module + ".")


_plugins: dict[tuple[str, str, str], Plugin] = {}  # (distribution, name, value) -> what loading it did
_scanned = False


def load_entry_points(rescan: bool = False) -> list[Plugin]:
    """Import every module the group names, once per process; returns every plugin, failed ones included.

    The installed distributions are scanned once (`entry_points()` reads every distribution's metadata,
    5-30 ms, and the catalog is asked for on every parse); `rescan=True` looks again, e.g. after an install."""
    global _scanned
    if _scanned and not rescan:
        return list(_plugins.values())
    _scanned = True
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        key = (dist, ep.name, ep.value)
        if key in _plugins:
            continue
        before = len(DECLARED)
        error = None
        try:
            ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin is reported, never fatal
            message = " ".join(str(exc).split())
            error = f"{type(exc).__name__}: {message[:300]}" if message else type(exc).__name__
        _plugins[key] = Plugin(ep.name, ep.value, dist, error, tuple(DECLARED[before:]))
    return list(_plugins.values())


def failed() -> list[Plugin]:
    """Plugins whose import raised, in load order."""
    return [p for p in _plugins.values() if p.error is not None]
