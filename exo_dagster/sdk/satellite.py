"""Declaring a satellite: its Config model base and the `@satellite(...)` decorator.

A satellite is a function `fn(ctx, config) -> table` plus a Config model. Declared satellites are
collected here; the catalog (`exo_dagster.catalog`) registers them, together with those its
entry-point group `exo_dagster.satellites` names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from exo_dagster.sdk.resources import Resources, kebab

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
    # Config/input fields whose text is another language (SQL, HTML): see embedded_languages.py,
    # so templated values are placed as that language's literals, never as its code.
    embeds: dict[str, Any] = field(default_factory=dict)  # field -> embedded_languages.EmbeddedLanguage
    # Config fields that an `input:` key of the same name replaces at run time (call-webhook's per-row `url`):
    # a preset's fixed fields must not be among them. None: not declared, any field may be (spec/preset_rules.py).
    overrides: tuple[str, ...] | None = None
    # A configured satellite (a preset, `*.satellite.yaml`, exo_dagster.catalog.presets): the base
    # satellite's fn and config model with these config values fixed (YAML key spelling). None for a
    # satellite written in Python. A step may set only the `open_config` fields; `based_on` is `id@version`.
    fixed_config: dict[str, Any] | None = None
    open_config: tuple[str, ...] = ()
    based_on: str = ""

    @property
    def name(self) -> str:
        return self.id.rsplit("/", 1)[1]


DECLARED: list[SatelliteDef] = []  # every `@satellite` without `registry=`, in declaration order
DEFINITION_ATTR = "__exo_satellite__"  # set on each decorated function: its SatelliteDef


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
    overrides: Iterable[str] | None = None,
    registry: Any = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare `fn(ctx, config) -> table` as a satellite; its docstring becomes its docs.

    With `registry=` (an `exo_dagster.catalog.Registry`) it is added there only; otherwise it joins
    the default catalog."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in (id, *aliases):
            if not SATELLITE_ID.match(name) or "@" in name:
                raise ValueError(f"satellite id must look like satellite/<project>/<name>, got {name!r}")
        definition = SatelliteDef(
            id=id,
            fn=fn,
            config_model=config,
            version=version,
            docs=(fn.__doc__ or "").strip(),
            inputs=dict(inputs or {}),
            outputs=dict(outputs or {}),
            resources=Resources.model_validate(resources or {}),
            kinds=tuple(kinds),
            aliases=tuple(aliases),
            table_references=table_references,
            embeds=dict(embeds or {}),
            overrides=None if overrides is None else tuple(overrides),
        )
        if registry is not None:
            registry.add(definition)
        else:
            DECLARED.append(definition)
        setattr(fn, DEFINITION_ATTR, definition)
        return fn

    return register
