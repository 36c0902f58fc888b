"""Structured LLM output: the seed's loose `{"field": type}` schema or JSON Schema, JSON pulled out of
a reply, checked against the schema, and turned into typed output columns.

Why here and not in the satellite: the same rules serve online calls, batch results and tests.
"""

from __future__ import annotations

import json
import re
from typing import Any

from exo_dagster.sdk.step_errors import PermanentError

TYPE_NAMES = {
    "string": "string",
    "str": "string",
    "text": "string",
    "integer": "integer",
    "int": "integer",
    "number": "number",
    "float": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "object": "object",
    "dict": "object",
    "array": "array",
    "list": "array",
    "any": None,
}
PLACEHOLDER = "..."  # `output-schema: {...}` in the seed: an object, fields not spelled out
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)


class InvalidOutput(PermanentError):
    """The reply is not the JSON the schema asks for; the message says why (it is sent back to the model)."""


def is_json_schema(spec: dict) -> bool:
    return "$schema" in spec or "properties" in spec or spec.get("type") == "object"


def to_json_schema(spec: dict | None) -> dict:
    """A JSON Schema for `output-schema` in either form; ValueError says what is wrong."""
    if spec is None:
        return {"type": "object"}
    if not isinstance(spec, dict):
        raise ValueError(
            "output-schema must be a mapping: JSON Schema, or {field: type} such as {label: string, urgent: boolean}"
        )
    if is_json_schema(spec):
        try:
            import jsonschema
        except ImportError:  # checked when the step runs (the `ai` extra brings jsonschema)
            jsonschema = None
        if jsonschema is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(spec)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"output-schema is not valid JSON Schema: {exc.message}") from None
        if spec.get("type", "object") != "object":
            raise ValueError("output-schema must describe a JSON object (type: object): each field becomes a column")
        return spec
    return _loose_object(spec, "")


def _loose_object(spec: dict, path: str) -> dict:
    fields = {str(k): _loose(v, f"{path}{k}") for k, v in spec.items() if k != PLACEHOLDER}
    schema: dict[str, Any] = {"type": "object"}
    if fields:
        schema.update(properties=fields, required=list(fields))
    return schema


def _loose(value: Any, path: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        key = value.strip().lower()
        if key not in TYPE_NAMES:
            raise ValueError(
                f"output-schema field `{path}` has unknown type `{value}`; use one of "
                "string, integer, number, boolean, array, object, any (or a list of allowed values)"
            )
        kind = TYPE_NAMES[key]
        return {"type": kind} if kind else {}
    if isinstance(value, dict):
        return _loose_object(value, path + ".")
    if isinstance(value, list):
        if not value:
            return {"type": "array"}
        if len(value) == 1 and (
            isinstance(value[0], dict) or (isinstance(value[0], str) and value[0].lower() in TYPE_NAMES)
        ):
            return {"type": "array", "items": _loose(value[0], path + "[]")}
        return {"enum": list(value)}  # a list of literals: the allowed values
    raise ValueError(
        f"output-schema field `{path}`: write a type name (string, integer, ...), a list of allowed values, "
        f"or a nested mapping, not {value!r}"
    )


def fields(schema: dict | None) -> dict[str, dict]:
    """The top-level properties (one output column each); empty when there is no schema or it names none."""
    return dict((schema or {}).get("properties") or {})


def strip_reasoning(text: str) -> str:
    """Drop `<think>...</think>` blocks (DeepSeek-R1 and its distills put their reasoning there)."""
    text = _THINK.sub("", text)
    if "</think>" in text:  # an opening tag the server already stripped
        text = text.split("</think>", 1)[1]
    return text.strip()


def extract_json(text: str) -> Any:
    """The JSON object in a reply: bare, fenced in ```json, or surrounded by prose."""
    body = text.strip()
    fence = _FENCE.match(body)
    if fence:
        body = fence.group(1).strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError as first:
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end <= start:
            raise InvalidOutput(f"the reply is not JSON ({first.msg} at character {first.pos})") from None
        try:
            value = json.loads(body[start : end + 1])
        except json.JSONDecodeError as exc:
            raise InvalidOutput(f"the reply is not valid JSON ({exc.msg} at character {start + exc.pos})") from None
    if not isinstance(value, dict):
        raise InvalidOutput(f"the reply must be one JSON object, got a JSON {type(value).__name__}")
    return value


def validate(value: dict, schema: dict) -> None:
    import jsonschema
    from jsonschema.exceptions import best_match

    validator = jsonschema.Draft202012Validator(schema)
    error = best_match(validator.iter_errors(value))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path)
        raise InvalidOutput(
            f"the reply does not match the output schema{f' at `{where}`' if where else ''}: {error.message}"
        )


def parse(text: str, schema: dict) -> dict[str, Any]:
    """Reply text -> output columns: one per schema field, or `json` (the object as text) when none are named."""
    value = extract_json(text)
    validate(value, schema)
    named = fields(schema)
    if not named:
        return {"json": json.dumps(value, ensure_ascii=False, sort_keys=True)}
    return {name: column_value(value.get(name), spec) for name, spec in named.items()}


def column_value(value: Any, spec: dict) -> Any:
    """A JSON value as a column cell of one type per field: typed scalars as they are, string arrays as
    lists, anything else (objects, other arrays, untyped fields) as JSON text."""
    if value is None:
        return None
    kind = spec.get("type")
    enum = spec.get("enum")
    if kind == "string" or (kind is None and enum and all(isinstance(v, str) for v in enum)):
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if kind == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "array" and (spec.get("items") or {}).get("type") == "string" and isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value]
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
