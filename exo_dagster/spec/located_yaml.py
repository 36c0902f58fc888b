"""YAML loading that remembers where every node came from, and that no input can crash or stall.

Cluster files come from many teams and are read by the code location on every load, so the
loader is a trust boundary. It reads PyYAML's (libyaml's) event stream and composes the node
tree itself, iteratively, instead of using the recursive composer (a C recursion in libyaml's
bindings, which deep nesting turns into a segfault). On the way it bounds what YAML allows but
a spec never needs:

- nesting deeper than MAX_DEPTH, aliases that contain themselves, aliases that expand to more
  than MAX_ALIAS_VALUES values (the "billion laughs");
- bytes that are not UTF-8 text, characters YAML forbids;
- tags the spec does not know (`!!binary`, `!!set`, `!custom`, tags on lists and mappings);
- numbers that do not fit a 64-bit integer, and NaN/infinity.

Values are plain JSON data (str, int, float, bool, None, list, dict with str keys): a YAML
date stays the text it was written as, a key is the text it was written as (`on:` is "on").
Every value and key gets a location, so pydantic errors can point at FILE:LINE:COL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exo_dagster.spec.errors import Diagnostic, Location, Note
from exo_dagster.spec.yaml_syntax import MAX_DEPTH, NESTING_HINT, NESTING_TOO_DEEP, QUOTE_HINT, syntax_diagnostic

Path = tuple[Any, ...]
KEY = "<key>"  # path suffix for the location of a mapping key rather than its value

MAX_ALIAS_VALUES = 100_000  # values that aliases may add by copying (a 1,000-step file has ~20,000 values)
MAX_FILE_BYTES = 16 * 1024 * 1024
INT64 = (-(2**63), 2**63 - 1)

_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}
_AS_TEXT_TAGS = {_TAG + "timestamp"}  # a date is kept as the text it was written as
_MERGE = _TAG + "merge"
# What YAML 1.1 forbids in a stream (PyYAML's reader.NON_PRINTABLE), found before the parser sees it.
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_QUOTE_HINT = QUOTE_HINT


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


if TYPE_CHECKING:  # both loaders offer the parser, resolver and constructor API used here
    from yaml import CSafeLoader as _BaseLoader
else:  # libyaml's safe loader where PyYAML was built with it
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """libyaml's safe loader where available (about 3x faster), else PyYAML's. We use its event
    parser, tag resolver and scalar constructors; composition is ours (see module docstring)."""


class _Stop(Exception):
    """One located problem that ends loading (the rest of the file cannot be trusted)."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _loc(file: str, mark: yaml.Mark | None) -> Location:
    return Location(file, mark.line + 1, mark.column + 1) if mark is not None else Location(file, 1, 1)


def _event_loc(file: str, event: Event | None) -> Location:
    """Where a parser event starts (the parser's type allows None, which it never returns inside a stream)."""
    return _loc(file, event.start_mark if event is not None else None)


def decode(data: bytes, file: str) -> tuple[str | None, list[Diagnostic]]:
    """Bytes of a cluster file as text; a located error for bytes that are not UTF-8."""
    if len(data) > MAX_FILE_BYTES:
        return None, [
            Diagnostic(
                Location(file, 1, 1),
                f"the file is {len(data):,} bytes; a cluster file may have at most {MAX_FILE_BYTES:,}",
                "split it into several cluster files",
            )
        ]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, [
            Diagnostic(
                Location(file, 1, 1),
                "the file is UTF-16 text; cluster files are UTF-8",
                "save the file as UTF-8 (your editor's encoding setting)",
            )
        ]
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8", errors="replace")
        line = good.count("\n") + 1
        column = len(good) - (good.rfind("\n") + 1) + 1
        return None, [
            Diagnostic(
                Location(file, line, column),
                f"byte 0x{data[exc.start]:02x} is not UTF-8 text",
                "save the file as UTF-8, or remove the stray byte",
            )
        ]


def load_located(text: str | bytes, file: str) -> tuple[LocatedDocument, list[Diagnostic]]:
    """Parse YAML text; returns the document and any diagnostics (on an error data is None)."""
    if isinstance(text, bytes):
        decoded, problems = decode(text, file)
        if decoded is None:  # the lines as best we can read them, so the error quotes its line
            return LocatedDocument(
                file=file, data=None, lines=text[:MAX_FILE_BYTES].decode("utf-8", "replace").splitlines()
            ), problems
        text = decoded
    doc = LocatedDocument(file=file, data=None, lines=text.splitlines())
    bad = _NON_PRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        return doc, [
            Diagnostic(
                Location(file, line, column),
                f"control character U+{ord(bad.group()):04X} is not allowed in YAML",
                "remove it (in a quoted string write it as an escape such as \\t or \\u0007)",
            )
        ]
    loader = _Loader(text)
    errors: list[Diagnostic] = []
    try:
        node = _compose(loader, file)
        if node is not None:
            doc.data = _Builder(doc, loader, errors).build(node)
    except _Stop as stop:
        errors.append(stop.diagnostic)
    except yaml.MarkedYAMLError as exc:
        errors.append(syntax_diagnostic(exc, file, text, doc.lines, _Loader))
    except yaml.YAMLError as exc:  # a reader error (bad character) carries a position, not a mark
        position = getattr(exc, "position", None)
        location = (
            Location(file, text.count("\n", 0, position) + 1, position - (text.rfind("\n", 0, position) + 1) + 1)
            if isinstance(position, int)
            else Location(file, 1, 1)
        )
        errors.append(Diagnostic(location, f"YAML error: {exc}", _QUOTE_HINT))
    finally:
        loader.dispose()
    if errors:
        doc.data = None
    return doc, errors


# -- composition: events to nodes, iteratively, with bounds -------------------------------------


class _Frame:
    __slots__ = ("node", "anchor", "size", "key")
    node: Node
    anchor: str | None
    size: int
    key: Node | None  # a mapping's key waiting for its value

    def __init__(self, node: Node, anchor: str | None):
        self.node, self.anchor, self.size, self.key = node, anchor, 1, None


def _compose(loader: _Loader, file: str) -> Node | None:
    """The file's single document as a node tree (aliases are shared nodes), or None when empty."""
    loader.get_event()  # StreamStart
    if loader.check_event(StreamEndEvent):
        loader.get_event()
        return None
    start = loader.get_event()
    if not isinstance(start, DocumentStartEvent):  # pragma: no cover - the parser guarantees it
        raise _Stop(Diagnostic(_event_loc(file, start), "YAML syntax error: expected a document", _QUOTE_HINT))
    anchors: dict[str, tuple[Node, int | None]] = {}  # size None: the anchored collection is still open
    stack: list[_Frame] = []
    root: list[Node] = []
    copied = 0

    def add(node: Node, size: int) -> None:
        if not stack:
            root.append(node)
            return
        frame = stack[-1]
        frame.size += size
        if isinstance(frame.node, SequenceNode):
            frame.node.value.append(node)
        elif frame.key is None:
            frame.key = node
        else:
            frame.node.value.append((frame.key, node))
            frame.key = None

    while not root:
        event = loader.get_event()
        if isinstance(event, AliasEvent):
            if event.anchor not in anchors:
                raise _Stop(
                    Diagnostic(
                        _loc(file, event.start_mark),
                        f"alias `*{event.anchor}` names no anchor above it",
                        f"define `&{event.anchor}` on a value before using `*{event.anchor}`",
                    )
                )
            node, size = anchors[event.anchor]
            if size is None:
                raise _Stop(
                    Diagnostic(
                        _loc(file, event.start_mark),
                        f"alias `*{event.anchor}` is inside the value it names (a loop)",
                        "an alias can only copy a value that is complete; remove the self-reference",
                    )
                )
            copied += size
            if copied > MAX_ALIAS_VALUES:
                raise _Stop(
                    Diagnostic(
                        _loc(file, event.start_mark),
                        f"aliases expand to more than {MAX_ALIAS_VALUES:,} values",
                        "every `*alias` copies its whole value; use fewer nested aliases",
                    )
                )
            add(node, size)
        elif isinstance(event, ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(ScalarNode, event.value, event.implicit)
            node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
            if event.anchor is not None:
                anchors[event.anchor] = (node, 1)
            add(node, 1)
        elif isinstance(event, (SequenceStartEvent, MappingStartEvent)):
            if len(stack) >= MAX_DEPTH:
                raise _Stop(Diagnostic(_loc(file, event.start_mark), NESTING_TOO_DEEP, NESTING_HINT))
            kind = SequenceNode if isinstance(event, SequenceStartEvent) else MappingNode
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(kind, None, event.implicit)
            node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
            if event.anchor is not None:
                anchors[event.anchor] = (node, None)
            stack.append(_Frame(node, event.anchor))
        elif isinstance(event, (SequenceEndEvent, MappingEndEvent)):
            frame = stack.pop()
            frame.node.end_mark = event.end_mark
            if frame.anchor is not None:
                anchors[frame.anchor] = (frame.node, frame.size)
            add(frame.node, frame.size)
        else:  # pragma: no cover - the parser emits nothing else inside a document
            raise _Stop(Diagnostic(_event_loc(file, event), "YAML syntax error: unexpected event", _QUOTE_HINT))
    end = loader.get_event()
    if not isinstance(end, DocumentEndEvent):  # pragma: no cover
        raise _Stop(
            Diagnostic(_event_loc(file, end), "YAML syntax error: expected the end of the document", _QUOTE_HINT)
        )
    if not loader.check_event(StreamEndEvent):
        extra = loader.get_event()
        raise _Stop(
            Diagnostic(
                _event_loc(file, extra),
                "a cluster file holds one YAML document; found a second one",
                "remove the `---` line and what follows, or split it into its own file",
            )
        )
    return root[0]


# -- building: nodes to plain JSON data with locations -----------------------------------------


class _Builder:
    def __init__(self, doc: LocatedDocument, loader: _Loader, errors: list[Diagnostic]):
        self.doc, self.loader, self.errors = doc, loader, errors

    def fail(self, node: Node, message: str, hint: str) -> None:
        self.errors.append(Diagnostic(_loc(self.doc.file, node.start_mark), message, hint))

    def build(self, node: Node, path: Path = ()) -> Any:
        self.doc.locations[path] = _loc(self.doc.file, node.start_mark)
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                self.fail(
                    node,
                    f"YAML tag `{_short(node.tag)}` on a list is not supported",
                    "remove the tag; a list is written plainly",
                )
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode), "the composer makes mapping, sequence and scalar nodes only"
        return self.scalar(node)

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        if node.tag != _TAG + "map":
            self.fail(
                node,
                f"YAML tag `{_short(node.tag)}` on a mapping is not supported",
                "remove the tag; a mapping is written plainly",
            )
        explicit = sum(1 for key, _ in node.value if key.tag != _MERGE)
        self.loader.flatten_mapping(node)  # `<<: *base` merge keys; explicit keys after them override
        merged = len(node.value) - explicit
        out: dict[str, Any] = {}
        explicit_seen: dict[str, Node] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, ScalarNode):
                self.fail(
                    key_node, "a mapping key must be a plain value", "write the key as a plain word, e.g. `name:`"
                )
                continue
            key = key_node.value  # the text as written: `on:` is "on", `1:` is "1"
            if index >= merged:
                if key in explicit_seen:
                    first = _loc(self.doc.file, explicit_seen[key].start_mark)
                    self.errors.append(
                        Diagnostic(
                            _loc(self.doc.file, key_node.start_mark),
                            f"duplicate key `{key}` (first at {first.line}:{first.column})",
                            "remove one of the two entries with this key, or merge them",
                            notes=(Note(first, f"`{key}` is first set here"),),
                        )
                    )
                else:
                    explicit_seen[key] = key_node
            self.doc.locations[path + (key, KEY)] = _loc(self.doc.file, key_node.start_mark)
            out[key] = self.build(value_node, path + (key,))
        return out

    def scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        if tag in _AS_TEXT_TAGS:
            return node.value
        if tag not in _PLAIN_TAGS:
            self.fail(
                node,
                f"YAML tag `{_short(tag)}` is not supported",
                "remove the tag; values are plain strings, numbers, booleans, lists and mappings",
            )
            return None
        try:
            value = self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError, yaml.YAMLError):
            self.fail(node, f"`{node.value}` is not a valid {_short(tag)[2:]}", "quote it to make it a string")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(
                node, f"`{node.value}` is not a finite number", "write a finite number, or quote it to make it a string"
            )
            return None
        if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
            self.fail(
                node,
                f"`{node.value[:40]}` does not fit a 64-bit integer",
                "use a smaller number, or quote it to make it a string",
            )
            return None
        return value


def _short(tag: str | None) -> str:
    return "!!" + tag[len(_TAG) :] if tag and tag.startswith(_TAG) else str(tag)
