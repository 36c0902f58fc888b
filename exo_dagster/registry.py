"""The satellite registry: `@satellite(...)` registers a function under `satellite/<project>/<name>`."""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict

from .spec import Resources, kebab

SATELLITE_ID = re.compile(r"^satellite/([a-z0-9][a-z0-9_.-]*)/([a-z0-9][a-z0-9_.-]*)(?:@([A-Za-z0-9_.+-]+))?$")


class SatelliteConfig(BaseModel):
    """Base of every satellite's `config` model: strict, hyphenated YAML keys."""

    model_config = ConfigDict(extra="forbid", alias_generator=kebab, populate_by_name=True, frozen=True)


@dataclass(frozen=True)
class SatelliteDef:
    """Everything the compiler needs to know about one satellite."""

    id: str
    fn: Callable[..., Any]
    config_model: type[SatelliteConfig]
    version: str = "1.0.0"
    docs: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    kinds: tuple[str, ...] = ("polars",)
    aliases: tuple[str, ...] = ()
    # Extra upstream identifiers a step reads beyond its templates (e.g. table names in SQL).
    table_references: Callable[[dict[str, Any]], set[str]] | None = None
    # Config/input fields whose text is another language (SQL, HTML): see embedding.py,
    # so templated values are placed as that language's literals, never as its code.
    embeds: dict[str, Any] = field(default_factory=dict)  # field -> embedding.Embedding

    @property
    def name(self) -> str:
        return self.id.rsplit("/", 1)[1]


class UnknownSatellite(LookupError):
    def __init__(self, uses: str, suggestions: list[str], reason: str = "unknown satellite"):
        super().__init__(f"{reason} `{uses}`")
        self.uses, self.suggestions, self.reason = uses, suggestions, reason


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


def satellite(
    id: str,
    *,
    config: type[SatelliteConfig],
    version: str = "1.0.0",
    inputs: dict[str, str] | None = None,
    outputs: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
    kinds: Iterable[str] = ("polars",),
    aliases: Iterable[str] = (),
    table_references: Callable[[dict[str, Any]], set[str]] | None = None,
    embeds: dict[str, Any] | None = None,
    registry: Registry | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn(ctx, config) -> table` as a satellite; its docstring becomes its docs."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        (registry or REGISTRY).add(SatelliteDef(
            id=id, fn=fn, config_model=config, version=version, docs=(fn.__doc__ or "").strip(),
            inputs=dict(inputs or {}), outputs=dict(outputs or {}),
            resources=Resources.model_validate(resources or {}), kinds=tuple(kinds),
            aliases=tuple(aliases), table_references=table_references, embeds=dict(embeds or {}),
        ))
        return fn

    return register


def builtin_registry() -> Registry:
    """The global registry with the built-in catalog (`satellites/`) imported into it."""
    importlib.import_module("satellites")
    return REGISTRY
