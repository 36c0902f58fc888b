"""Run inputs' values: each declared type's one canonical value, from YAML, run config or `NAME=VALUE` text.

The same rules check a `default:`, a trigger's `inputs:`, the launchpad's run config and
`exo run --input`, so a value accepted in one place is accepted in all of them. A date stays the ISO
text `YYYY-MM-DD` (a datetime the ISO text it parses to): what SQL compares with a DATE column and
what a path or message shows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from exo_dagster.errors import UserError

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class InputValueError(UserError, ValueError):
    """A value that does not fit its input's type, or an input missing or unknown."""


def coerce(declared: Any, value: Any) -> Any:
    """`value` as the canonical value of `declared` (a spec RunInput); InputValueError says what is wrong."""
    kind = declared.type
    if value is None:
        raise InputValueError(f"is empty; give a {kind}")
    if kind == "string":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputValueError(f"must be a string, got {_shown(value)}")
        return str(value)
    if kind == "int":
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise InputValueError(f"must be a whole number, got {_shown(value)}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputValueError(f"must be a whole number, got {_shown(value)}")
        return value
    if kind == "float":
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise InputValueError(f"must be a number, got {_shown(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputValueError(f"must be a number, got {_shown(value)}")
        return float(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise InputValueError(f"must be true or false, got {_shown(value)}")
    if kind == "date":
        if isinstance(value, dt.datetime):
            raise InputValueError(f"must be a date (YYYY-MM-DD), got the datetime {_shown(value)}")
        if isinstance(value, dt.date):
            return value.isoformat()
        try:
            return dt.date.fromisoformat(str(value).strip()).isoformat()
        except ValueError:
            raise InputValueError(f"must be a date written YYYY-MM-DD, got {_shown(value)}") from None
    if kind == "datetime":
        if isinstance(value, dt.datetime):
            return value.isoformat()
        try:
            return dt.datetime.fromisoformat(str(value).strip()).isoformat()
        except ValueError:
            raise InputValueError(
                f"must be a date and time written like 2026-11-01T08:00:00, got {_shown(value)}"
            ) from None
    if kind == "list":
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    raise InputValueError(
                        f'must be a list: a JSON list such as ["a", "b"] or a, b; got {_shown(value)}'
                    ) from None
            else:
                value = [part.strip() for part in text.split(",")] if text else []
        if not isinstance(value, (list, tuple)) or any(isinstance(v, (dict, list, tuple)) for v in value):
            raise InputValueError(f"must be a list of plain values, got {_shown(value)}")
        return list(value)
    if kind == "enum":
        for choice in declared.values or ():
            if (value == choice and isinstance(value, bool) == isinstance(choice, bool)) or (
                isinstance(value, str) and value.strip() == choice_text(choice)
            ):
                return choice
        raise InputValueError(
            f"must be one of {', '.join(map(choice_text, declared.values or ()))}; got {_shown(value)}"
        )
    raise InputValueError(f"has an unknown type {kind!r}")


def resolve_values(declared: Mapping[str, Any], given: Mapping[str, Any], *, where: str = "") -> dict[str, Any]:
    """Every declared input's value: given (coerced), else its default, else None; every problem at once."""
    problems = [
        f"input `{name}` is not declared"
        + (f" ({where})" if where else "")
        + (f"; declared: {', '.join(declared)}" if declared else "; this cluster declares no `inputs:`")
        for name in given
        if name not in declared
    ]
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        raw = given.get(name)
        if raw is None:
            if spec.required:
                problems.append(
                    f"input `{name}` is required ({spec.type}"
                    + (f": {spec.description}" if spec.description else "")
                    + ")"
                )
                continue
            values[name] = None if spec.default is None else coerce(spec, spec.default)
            continue
        try:
            values[name] = coerce(spec, raw)
        except InputValueError as exc:
            problems.append(f"input `{name}` {exc}")
    if problems:
        raise InputValueError("; ".join(problems))
    return values


def choice_text(choice: Any) -> str:
    """An enum choice as it is written at launch (`true`, not Python's `True`)."""
    return ("true" if choice else "false") if isinstance(choice, bool) else str(choice)


def parse_assignment(text: str) -> tuple[str, str]:
    """`NAME=VALUE` (`exo run --input`) as (name, value text)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InputValueError(f"`{text}` is not NAME=VALUE (e.g. --input region=east)")
    return name.strip(), value


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."
