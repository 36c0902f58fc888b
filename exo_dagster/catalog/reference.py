"""The satellite reference, made from the code: each satellite's definition and its Config model.

`markdown()` is docs/satellites.md (`exo satellites --markdown > docs/satellites.md`), `config_table()`
is what `exo satellites --config ID` prints, and `catalog_summary()` is the satellite table in the
README (`python -m exo_dagster.catalog.reference --readme README.md` rewrites it in place). A field's
text is its `Field(description=...)`; its YAML key, type and default come from the model itself, so
the reference cannot drift from what a cluster file is checked against.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from exo_dagster.catalog.registry import Registry, default_registry
from exo_dagster.sdk.doc_summary import first_paragraph, first_sentence
from exo_dagster.sdk.resources import Resources, kebab
from exo_dagster.sdk.satellite import SatelliteDef

REGENERATE = "exo satellites --markdown > docs/satellites.md"
REGENERATE_README = "python -m exo_dagster.catalog.reference --readme README.md"
DOCS_PATH = "docs/satellites.md"
SUMMARY_START = "<!-- satellite-summary:start (generated: {command}) -->"
SUMMARY_END = "<!-- satellite-summary:end -->"

_TYPE_NAMES = {
    str: "string",
    int: "int",
    float: "number",
    bool: "boolean",
    bytes: "bytes",
    Any: "any",
    type(None): "null",
    dict: "mapping",
    list: "list",
}
_BARE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/+-]*$")  # strings shown without quotes
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "~"}


@dataclass(frozen=True)
class FieldDoc:
    """One Config field as the reference shows it."""

    name: str  # the Python attribute
    key: str  # the YAML key (the alias)
    type: str  # readable type, plain text
    type_md: str  # the same, with nested models linked
    default: str  # the default as YAML, or "required"
    required: bool
    description: str  # "" when the field has none


# -- a definition's parts ---------------------------------------------------------------------
def definitions(registry: Registry) -> list[SatelliteDef]:
    """Each satellite once (aliases resolve to it), by id."""
    found: dict[str, SatelliteDef] = {}
    for uses in registry.ids():
        definition = registry.get(uses)
        found[definition.id] = definition
    return [found[i] for i in sorted(found)]


def summary(definition: SatelliteDef) -> str:
    """One line: the first sentence of the docs."""
    return first_sentence(definition.docs)


def resources_text(resources: Resources) -> str:
    """The resources a satellite asks for by default (`gpu: 1`), "" when none."""
    defaults = Resources()
    parts = [
        f"{field.alias or kebab(name)}: {yaml_value(getattr(resources, name))}"
        for name, field in Resources.model_fields.items()
        if getattr(resources, name) != getattr(defaults, name)
    ]
    return ", ".join(parts)


def source_of(registry: Registry, satellite_id: str) -> str | None:
    """The distribution that provides a satellite, when the registry can tell (`Registry.source`)."""
    source = getattr(registry, "source", None)
    if not callable(source):
        return None
    try:
        found = source(satellite_id)
    except (KeyError, LookupError):
        return None
    return found if isinstance(found, str) and found else None


# -- Config fields ---------------------------------------------------------------------------
def fields(model: type[BaseModel]) -> list[FieldDoc]:
    """The model's fields: its own first, then those of its bases (e.g. the shared HTTP settings)."""
    order: list[str] = []
    for cls in model.__mro__:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            continue
        for name in cls.__dict__.get("__annotations__", {}):
            if name in model.model_fields and name not in order:
                order.append(name)
    order += [name for name in model.model_fields if name not in order]
    out = []
    for name in order:
        info = model.model_fields[name]
        required = info.is_required()
        out.append(
            FieldDoc(
                name=name,
                key=info.alias or name,
                type=type_text(info.annotation),
                type_md=type_text(info.annotation, links=True),
                default="required" if required else yaml_value(info.get_default(call_default_factory=True)),
                required=required,
                description=" ".join((info.description or "").split()),
            )
        )
    return out


def nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Models used in the fields' types (recursively), in order of first use."""
    found: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if _is_model(annotation):
            if annotation not in found:
                found.append(annotation)
                for info in annotation.model_fields.values():
                    visit(info.annotation)
            return
        for arg in get_args(annotation):
            visit(arg)

    for info in model.model_fields.values():
        visit(info.annotation)
    return found


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def anchor(name: str) -> str:
    """A stable HTML anchor for a satellite id or a model name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def type_text(annotation: Any, links: bool = False) -> str:
    """`string`, `int`, `list of string`, `one of: a, b`, `X or null`; models by name (linked in Markdown)."""
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of: " + ", ".join(_literal(v) for v in get_args(annotation))
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        others = [a for a in args if a is not type(None)]
        literals = [a for a in others if get_origin(a) is Literal]
        if len(others) < len(args) and len(literals) == len(others) == 1:
            return type_text(others[0], links) + ", null"
        text = " or ".join(type_text(a, links) for a in others)
        return text + (" or null" if len(others) < len(args) else "")
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return "list of " + type_text(args[0], links) if args else "list"
    if origin is dict or annotation is dict:
        args = get_args(annotation)
        if not args or args == (str, Any):
            return "mapping"
        return f"mapping of {type_text(args[0], links)} to {type_text(args[1], links)}"
    if _is_model(annotation):
        return f"[{annotation.__name__}](#{anchor(annotation.__name__)})" if links else annotation.__name__
    if annotation in _TYPE_NAMES:
        return _TYPE_NAMES[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _literal(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def yaml_value(value: Any) -> str:
    """A default as it would be written in YAML (strings bare when that reads the same)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    if isinstance(value, str) and _BARE.match(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


# -- Markdown --------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _table(headers: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _fields_table(model: type[BaseModel]) -> list[str]:
    docs = fields(model)
    if not docs:
        return ["No config fields."]
    return _table(
        ["YAML key", "type", "default", "description"],
        [[_code(f.key), f.type_md, "required" if f.required else _code(f.default), f.description] for f in docs],
    )


def satellite_markdown(definition: SatelliteDef) -> list[str]:
    lines = [f'<a id="{anchor(definition.id)}"></a>', "", f"## {definition.id}", ""]
    facts = [f"version: `{definition.version}`"]
    if definition.aliases:
        facts.append("aliases: " + ", ".join(_code(a) for a in definition.aliases))
    resources = resources_text(definition.resources)
    if resources:
        facts.append(f"resources: `{resources}`")
    lines += [f"- {fact}" for fact in facts] + [""]
    paragraph = first_paragraph(definition.docs)
    if paragraph:
        lines += [paragraph, ""]
    if definition.inputs:
        lines += (
            ["**Inputs**", ""]
            + _table(["key", "meaning"], [[_code(k), v] for k, v in definition.inputs.items()])
            + [""]
        )
    if definition.outputs:
        lines += (
            ["**Outputs**", ""]
            + _table(["column", "meaning"], [[_code(k), v] for k, v in definition.outputs.items()])
            + [""]
        )
    lines += [f"**Config** (`{definition.config_model.__name__}`)", ""] + _fields_table(definition.config_model) + [""]
    return lines


def markdown(registry: Registry | None = None) -> str:
    """The whole reference: a header saying how it is made, a table of contents, then each satellite."""
    registry = registry if registry is not None else default_registry()
    defs = definitions(registry)
    lines = [
        f"<!-- Generated from the satellite definitions and their Config models (exo_dagster/catalog/reference.py); "
        f"do not edit by hand. Regenerate: {REGENERATE} -->",
        "",
        "# Satellite reference",
        "",
        f"Generated from the code: regenerate with `{REGENERATE}`. One satellite's config fields: "
        '`exo satellites --config ID`. YAML keys are the `config:` keys of a step; "required" fields have no default.',
        "",
    ]
    lines += _table(
        ["satellite", "version", "does"], [[f"[`{d.id}`](#{anchor(d.id)})", _code(d.version), summary(d)] for d in defs]
    ) + [""]
    models: list[type[BaseModel]] = []
    for definition in defs:
        lines += satellite_markdown(definition)
        models += [m for m in nested_models(definition.config_model) if m not in models]
    if models:
        lines += ["## Models used in config fields", ""]
        for model in sorted(models, key=lambda m: m.__name__):
            lines += [f'<a id="{anchor(model.__name__)}"></a>', "", f"### {model.__name__}", ""]
            doc = first_paragraph(model.__doc__ or "")
            if doc:
                lines += [doc, ""]
            lines += _fields_table(model) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def catalog_summary(registry: Registry | None = None, docs_path: str = DOCS_PATH) -> str:
    """The README's satellite table: each id (linked into the reference), its aliases, one line."""
    registry = registry if registry is not None else default_registry()
    rows = []
    for d in definitions(registry):
        prefix = d.id.rsplit("/", 1)[0] + "/"
        short = [a[len(prefix) :] if a.startswith(prefix) else a for a in d.aliases]
        aliases = f" (alias {', '.join(_code(a) for a in short)})" if d.aliases else ""
        rows.append([f"[`{d.id}`]({docs_path}#{anchor(d.id)}){aliases}", summary(d)])
    return "\n".join(_table(["satellite", "does"], rows)) + "\n"


def replace_summary(readme: str, table: str) -> str:
    """README text with the block between the summary markers replaced by `table`."""
    start = SUMMARY_START.format(command=REGENERATE_README)
    begin, end = readme.find(start), readme.find(SUMMARY_END)
    if begin < 0 or end < begin:
        raise ValueError(f"the README has no `{start}` ... `{SUMMARY_END}` block")
    return readme[: begin + len(start)] + "\n" + table + readme[end:]


def readme_summary(readme: str) -> str | None:
    """The table currently between the README's summary markers (None without the markers)."""
    start = SUMMARY_START.format(command=REGENERATE_README)
    begin, end = readme.find(start), readme.find(SUMMARY_END)
    return None if begin < 0 or end < begin else readme[begin + len(start) : end].lstrip("\n")


# -- the terminal ----------------------------------------------------------------------------
def config_table(definition: SatelliteDef, width: int | None = None) -> str:
    """One satellite's config fields as a text table: key, type and default aligned, the description
    wrapped in the last column."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    docs = fields(definition.config_model)
    head = [f"{definition.id}@{definition.version}  (config model {definition.config_model.__name__})"]
    line = summary(definition)
    if line:
        head.append(line)
    if definition.fixed_config is not None:  # a configured satellite: only its open fields are settable
        docs = [f for f in docs if f.key in definition.open_config]
        head.append(
            f"configured from {definition.based_on}; fixed: "
            + (", ".join(f"{k}={v!r}" for k, v in definition.fixed_config.items()) or "nothing")
        )
        if not docs:
            return "\n".join(head + ["", "no open config fields"]) + "\n"
    if not docs:
        return "\n".join(head + ["", "no config fields"]) + "\n"
    rows = [["KEY", "TYPE", "DEFAULT", "DESCRIPTION"]] + [
        [f.key, f.type, f.default, f.description or "-"] for f in docs
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    indent = sum(widths) + 2 * 3
    wrap = max(40, width - indent)
    out = head + [""]
    for row in rows:
        left = "  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  "
        parts = textwrap.wrap(row[3], wrap, break_long_words=False, break_on_hyphens=False) or [""]
        out.append((left + parts[0]).rstrip())
        out += [" " * indent + p for p in parts[1:]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m exo_dagster.catalog.reference [--readme README.md] [--summary]`: print the reference,
    print the README's satellite table, or rewrite that table in place."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--summary"]:
        sys.stdout.write(catalog_summary())
        return 0
    if args[:1] == ["--readme"] and len(args) == 2:
        with open(args[1], encoding="utf-8") as fh:
            text = fh.read()
        with open(args[1], "w", encoding="utf-8") as fh:
            fh.write(replace_summary(text, catalog_summary()))
        return 0
    if args:
        sys.stderr.write("usage: python -m exo_dagster.catalog.reference [--summary | --readme README.md]\n")
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
