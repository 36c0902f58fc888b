"""The `${{ ... }}` template grammar: a tiny parser and evaluator, never eval or Jinja.

template  := text* (ref text*)*
ref       := '${{' path '}}'        a value, resolved once per step
           | '$${{' path '}}'       "this row's" value: the step runs once per row
path      := secrets.NAME | env.NAME | cluster.FIELD | inputs.NAME
           | satellites.ID.output | satellites.ID.output.COLUMN
           | failure.FIELD          (only in a cluster's `failure` satellites)
           | partition.key | partition.start | partition.end   (partitioned clusters; the run's partition)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from exo_dagster.errors import UserError

CLUSTER_FIELDS = ("identifier", "title", "description", "trigger", "sla", "project", "name")
FAILURE_FIELDS = ("step", "error", "run-id", "rows")
PARTITION_FIELDS = ("key", "start", "end")
_OPEN = re.compile(r"(\$?)\$\{\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


class TemplateSyntaxError(UserError, ValueError):
    """Bad template text; `offset` is where in the string it went wrong."""

    def __init__(self, message: str, offset: int, hint: str):
        super().__init__(message)
        self.message, self.offset, self.hint = message, offset, hint


@dataclass(frozen=True)
class Reference:
    """One `${{ root.a.b }}` in a string; start/end are offsets of the whole `${{ }}`."""

    root: str
    parts: tuple[str, ...]
    per_row: bool
    start: int
    end: int
    text: str

    @property
    def satellite(self) -> str | None:
        return self.parts[0] if self.root == "satellites" else None

    @property
    def column(self) -> str | None:
        return self.parts[2] if self.root == "satellites" and len(self.parts) == 3 else None


@dataclass(frozen=True)
class Template:
    """A parsed string: literal text pieces and references, in order."""

    pieces: tuple[str | Reference, ...]

    @property
    def references(self) -> list[Reference]:
        return [p for p in self.pieces if isinstance(p, Reference)]

    @property
    def whole(self) -> Reference | None:
        """The reference, when the string is exactly one `${{ }}` and nothing else."""
        return self.pieces[0] if len(self.pieces) == 1 and isinstance(self.pieces[0], Reference) else None


def has_template(value: str) -> bool:
    return "${{" in value


def parse(text: str) -> Template:
    pieces: list[str | Reference] = []
    pos = 0
    for match in _OPEN.finditer(text):
        if match.start() < pos:
            continue
        if match.start() > pos:
            pieces.append(text[pos : match.start()])
        close = text.find("}}", match.end())
        if close < 0:
            raise TemplateSyntaxError(
                "unclosed template `${{`", match.start(), "close it with `}}`, e.g. `${{ env.NAME }}`"
            )
        inner = text[match.end() : close]
        pieces.append(_reference(inner, bool(match.group(1)), match.start(), close + 2, match.end()))
        pos = close + 2
    if pos < len(text):
        pieces.append(text[pos:])
    return Template(tuple(pieces))


def _reference(inner: str, per_row: bool, start: int, end: int, inner_at: int) -> Reference:
    body = inner.strip()
    offset = inner_at + (len(inner) - len(inner.lstrip()))
    text = ("$" if per_row else "") + "${{ " + body + " }}"
    if not body:
        raise TemplateSyntaxError(
            "empty template `${{ }}`", start, "put a reference inside, e.g. `${{ satellites.ID.output }}`"
        )
    parts = body.split(".")
    # `satellites.x.output.a.b` is not allowed, but column names may hold dots in the future: keep it strict.
    for part in parts:
        if not _NAME.match(part):
            raise TemplateSyntaxError(
                f"`{body}` is not a valid reference",
                offset,
                "references are dotted names such as `satellites.ID.output.column`, "
                "`secrets.NAME`, `env.NAME` or `cluster.identifier`",
            )
    root, rest = parts[0], tuple(parts[1:])
    if root == "satellites":
        if len(rest) not in (2, 3) or rest[1] != "output":
            raise TemplateSyntaxError(
                f"`{body}` is not a valid satellite reference",
                offset,
                "write `satellites.ID.output` for a whole table or `satellites.ID.output.COLUMN` for one column",
            )
        if per_row and len(rest) != 3:
            raise TemplateSyntaxError(
                "a per-row reference `$${{ }}` needs a column", offset, "write `$${{ satellites.ID.output.COLUMN }}`"
            )
    elif root in ("secrets", "env", "inputs"):
        if len(rest) != 1:
            raise TemplateSyntaxError(f"`{body}` is not a valid {root} reference", offset, f"write `{root}.NAME`")
    elif root == "cluster":
        if len(rest) != 1 or rest[0] not in CLUSTER_FIELDS:
            raise TemplateSyntaxError(
                f"`{body}` is not a cluster field",
                offset,
                "use one of: " + ", ".join(f"cluster.{f}" for f in CLUSTER_FIELDS),
            )
    elif root == "failure":
        if len(rest) != 1 or rest[0] not in FAILURE_FIELDS:
            raise TemplateSyntaxError(
                f"`{body}` is not a failure field",
                offset,
                "use one of: " + ", ".join(f"failure.{f}" for f in FAILURE_FIELDS),
            )
    elif root == "partition":
        if len(rest) != 1 or rest[0] not in PARTITION_FIELDS:
            raise TemplateSyntaxError(
                f"`{body}` is not a partition field",
                offset,
                "use one of: " + ", ".join(f"partition.{f}" for f in PARTITION_FIELDS),
            )
    else:
        raise TemplateSyntaxError(
            f"unknown template root `{root}`",
            offset,
            "a template starts with satellites., inputs., secrets., env., cluster., failure. or partition.",
        )
    if per_row and root != "satellites":
        raise TemplateSyntaxError(
            "only satellite columns can be per-row (`$${{ }}`)",
            start,
            "use `${{ ... }}` (one dollar) for inputs, secrets, env, cluster and partition values",
        )
    return Reference(root, rest, per_row, start, end, text)


def walk_strings(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Every string inside nested dicts/lists, with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from walk_strings(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_strings(v, path + (i,))


def render(value: Any, resolve: Callable[[Reference], Any]) -> Any:
    """Resolve every (non per-row) template in a nested value; a whole-string template keeps its type."""
    if isinstance(value, str):
        if not has_template(value):
            return value
        template = parse(value)
        if template.whole is not None:
            return resolve(template.whole)
        return "".join(p if isinstance(p, str) else as_text(resolve(p)) for p in template.pieces)
    if isinstance(value, dict):
        return {k: render(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, resolve) for v in value]
    return value


def as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)
