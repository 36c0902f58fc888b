"""What a configured satellite (a preset, `*.satellite.yaml`) fixes, as rules shared by the spec checker
(located errors at validate time) and the step runtime (a refusal at run time, in case a step was built
some other way). Every config field a preset does not leave `open:` is fixed, at its fixed value or the
base's default, and no channel may set it: not `config:` in any spelling, and not `input:`, whose keys
replace config fields in satellites such as call-webhook (a row's `url`). Spec layer: no Dagster, no catalog.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from typing import Any


def spelling(key: Any) -> str:
    """One spelling for every way a key can be written: Unicode-compatible form, any case, `-` or `_`,
    with or without Python's trailing `_` (`from_`): `URL`, `Url` and `ｕｒｌ` are all `url`."""
    text = unicodedata.normalize("NFKC", str(key)).casefold().strip()
    return text.replace("-", "_").strip("_")


def is_preset(definition: Any) -> bool:
    return getattr(definition, "fixed_config", None) is not None


def fields(model: Any) -> dict[str, str]:
    """{spelling: the field's YAML key} for both of each field's names (`max_tokens`, `max-tokens`)."""
    out: dict[str, str] = {}
    for name, info in model.model_fields.items():
        canonical = info.alias or name
        for written in (name, info.alias):
            if written:
                out.setdefault(spelling(written), canonical)
    return out


def field_for(model: Any, key: Any) -> str | None:
    """The YAML key of the field that `key` names in any spelling, else None."""
    return fields(model).get(spelling(key))


def locked(definition: Any) -> set[str]:
    """The YAML keys of the fields a step cannot set: all but the preset's `open` ones."""
    return set(fields(definition.config_model).values()) - set(definition.open_config)


def input_targets(definition: Any) -> dict[str, str]:
    """{spelling: field} of the config fields an `input:` key of that name replaces at run time. A satellite
    says which (`@satellite(overrides=...)`); one that does not say is taken to let any input set any field."""
    every = fields(definition.config_model)
    declared: Iterable[str] | None = getattr(definition, "overrides", None)
    if declared is None:
        return every
    named = {every[spelling(name)] for name in declared if spelling(name) in every}
    return {s: f for s, f in every.items() if f in named}


def fixed_by_input(definition: Any, given: dict) -> list[tuple[Any, str]]:
    """(input key, the fixed field it would set) for each `input:` key that reaches a field the preset fixes."""
    if not is_preset(definition):
        return []
    targets, closed = input_targets(definition), locked(definition)
    out = []
    for key in given:
        field = targets.get(spelling(key))
        if field is not None and field in closed:
            out.append((key, field))
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


def step_problems(definition: Any, config: dict, given: dict) -> list[str]:
    """Why a step's merged config and input break its preset (empty when they keep it): every fixed field at
    the preset's value in its YAML spelling, no other key but open fields, no input key reaching a fixed field."""
    if not is_preset(definition):
        return []
    model, fixed, opened = definition.config_model, definition.fixed_config, set(definition.open_config)
    exact = {
        written: info.alias or name
        for name, info in model.model_fields.items()
        for written in (name, info.alias)
        if written
    }
    problems, seen = [], set()
    for key, value in config.items():
        canonical = exact.get(key) if isinstance(key, str) else None
        if canonical is None:
            problems.append(f"config key `{key}` is not a field of `{definition.based_on}`")
        elif canonical in seen:
            problems.append(f"config field `{canonical}` is set twice (as `{key}` too)")
        elif canonical not in opened and (
            key != canonical or canonical not in fixed or not _same(value, fixed[canonical])
        ):
            problems.append(f"config field `{canonical}` differs from the value the preset fixes")
        if canonical is not None:
            seen.add(canonical)
    for canonical in fixed:
        if canonical not in opened and canonical not in seen:
            problems.append(f"config field `{canonical}`, fixed by the preset, is missing")
    problems += [
        f"`input.{key}` would set `{field}`, which the preset fixes" for key, field in fixed_by_input(definition, given)
    ]
    return problems
