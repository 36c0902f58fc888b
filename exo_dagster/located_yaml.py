"""YAML loading that remembers where every node came from.

PyYAML's composer gives marks for every node; we turn the node tree into plain Python
values plus a map from each value's path (a tuple of keys/indexes) to its location, so a
pydantic error `loc` can be pointed back at FILE:LINE:COL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Diagnostic, Location

Path = tuple[Any, ...]
KEY = "<key>"  # path suffix for the location of a mapping key rather than its value


@dataclass
class LocatedDocument:
    """Plain data from one YAML file plus the location of every value and key in it."""

    file: str
    data: Any
    lines: list[str]
    locations: dict[Path, Location] = field(default_factory=dict)

    def at(self, path: Path, *, key: bool = False) -> Location:
        """Location of the value (or key) at `path`, falling back to the nearest parent."""
        path = tuple(path)
        if key and path + (KEY,) in self.locations:
            return self.locations[path + (KEY,)]
        while path:
            if path in self.locations:
                return self.locations[path]
            path = path[:-1]
        return self.locations.get((), Location(self.file, 1, 1))


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's safe loader where available (about 3x faster), else PyYAML's; we only use its composer,
    so every node keeps its marks (both report the same lines and columns)."""


def _loc(file: str, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def _build(node: yaml.Node, path: Path, doc: LocatedDocument, loader: _Loader, errors: list[Diagnostic]) -> Any:
    doc.locations[path] = _loc(doc.file, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                errors.append(Diagnostic(_loc(doc.file, key_node.start_mark), "a mapping key must be a plain value",
                                         "write the key as a plain word, e.g. `name:`"))
                continue
            if key in out:
                errors.append(Diagnostic(_loc(doc.file, key_node.start_mark), f"duplicate key `{key}`",
                                         "remove one of the two entries with this key"))
            doc.locations[path + (key, KEY)] = _loc(doc.file, key_node.start_mark)
            out[key] = _build(value_node, path + (key,), doc, loader, errors)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), doc, loader, errors) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_located(text: str, file: str) -> tuple[LocatedDocument, list[Diagnostic]]:
    """Parse YAML text; returns the document and any syntax diagnostics (then data is None)."""
    doc = LocatedDocument(file=file, data=None, lines=text.splitlines())
    loader = _Loader(text)
    errors: list[Diagnostic] = []
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _build(node, (), doc, loader, errors)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = _loc(file, mark) if mark else Location(file, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        errors.append(Diagnostic(location, f"YAML syntax error: {problem}",
                                 "check indentation and quoting here; values containing `: ` or starting "
                                 "with `{`, `[`, `*`, `&` or `!` must be quoted"))
        doc.data = None
    finally:
        loader.dispose()
    return doc, errors
