"""Masking secret values out of text, values, logs, errors and tables (what every satellite emits passes here).

Secrets are masked in their plain form and in the encodings they commonly travel in (URL, base64, JSON),
and any run of FRAGMENT characters of one is masked too.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, cast

from exo_dagster import keys
from exo_dagster.errors import ExoError

MASK = "********"
MIN_MASKED_LENGTH = 4  # shorter values would mask ordinary words; such secrets are refused by no one, but not masked


FRAGMENT = 8  # any run of this many characters of a secret (or of an encoded form) is masked


def _maskable(values: Iterable[str]) -> list[str]:
    return sorted({v for v in values if v and len(v) >= MIN_MASKED_LENGTH}, key=len, reverse=True)


def encoded_forms(value: str) -> set[str]:
    """The ways a secret shows up in text besides itself: URL-encoded (both flavours), JSON-escaped,
    base64 (standard and URL-safe, at each of the three byte alignments inside a longer payload, such
    as `user:secret` in a Basic auth header) and hex."""
    raw = value.encode("utf-8")
    forms = {
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value, safe=""),
        urllib.parse.quote(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        raw.hex(),
    }
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            text = encode(b"\0" * shift + raw).decode("ascii").rstrip("=")
            # characters whose 6 bits come only from the secret's bytes
            first = -(-(8 * shift) // 6)
            last = (8 * (shift + len(raw))) // 6
            core = text[first:last]
            if len(core) >= FRAGMENT:
                forms.add(core)
    return {f for f in forms if f}


class Masker:
    """Masks secret values, their encoded forms and any 8+ character fragment of them in text."""

    def __init__(self, values: Iterable[str]):
        self.values = _maskable(values)
        forms: set[str] = set()
        for value in self.values:
            forms |= encoded_forms(value) if len(value) >= FRAGMENT else {value}
        self.forms = sorted(forms, key=len, reverse=True)
        short = [f for f in self.forms if len(f) < FRAGMENT]
        windows = {f[i : i + FRAGMENT] for f in self.forms if len(f) >= FRAGMENT for i in range(len(f) - FRAGMENT + 1)}
        self._short = re.compile("|".join(map(re.escape, short))) if short else None
        self._windows = re.compile("(?=(" + "|".join(map(re.escape, sorted(windows))) + "))") if windows else None
        self._window_set = frozenset(windows)

    def __bool__(self) -> bool:
        return bool(self.values)

    def spans(self, text: str) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        if self._windows is not None:
            found += [(m.start(), m.start() + FRAGMENT) for m in self._windows.finditer(text)]
        if self._short is not None:
            found += [m.span() for m in self._short.finditer(text)]
        merged: list[list[int]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return [(a, b) for a, b in merged]

    def _clean(self, text: str) -> bool:
        """True when a short text holds no secret: one set look-up per 8-char window instead of the
        windows regex, which tries every alternative at every position (~30 µs for a 20-char text)."""
        if len(text) > 512 or (self._short is not None and self._short.search(text)):
            return False
        windows = self._window_set
        return not any(text[i : i + FRAGMENT] in windows for i in range(len(text) - FRAGMENT + 1))

    def __call__(self, text: str) -> str:
        if not self.values or not text or self._clean(text):
            return text
        spans = self.spans(text)
        if not spans:
            return text
        out, pos = [], 0
        for start, end in spans:
            out += [text[pos:start], MASK]
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def contains(self, text: str) -> bool:
        return bool(self.values) and bool(text) and bool(self.spans(text))


_MASKERS: dict[tuple[str, ...], Masker] = {}


def masker(values: Iterable[str]) -> Masker:
    """A cached Masker for a set of values (building the patterns costs more than using them)."""
    key = tuple(_maskable(values))
    found = _MASKERS.get(key)
    if found is None:
        if len(_MASKERS) > 256:
            _MASKERS.clear()
        found = _MASKERS[key] = Masker(key)
    return found


def mask(text: str, values: Iterable[str]) -> str:
    """Replace every secret value (of 4+ chars, to avoid masking noise), its encoded forms and any 8+ char
    fragment of them in `text`."""
    return masker(values)(text)


def mask_value(value: Any, values: Iterable[str]) -> Any:
    """`mask` through nested dicts, lists and strings (metadata values, configs)."""
    values = _maskable(values)
    if not values:
        return value
    if isinstance(value, str):
        return mask(value, values)
    if isinstance(value, dict):
        return {mask_value(k, values): mask_value(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not _is_dagster(value):
        return type(value)(mask_value(v, values) for v in value)
    return _masked_object(value, masker(values), lambda inner: mask_value(inner, values))


def value_masker(values: Iterable[str]) -> Callable[[Any], Any]:
    """`mask_value` with the secrets' Masker looked up once: for masking many values in a row (each
    per-row result), where re-sorting the secrets at every nested value cost ~45 µs a row."""
    found = masker(values)
    if not found:
        return lambda value: value

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return found(value)
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and not _is_dagster(value):
            return type(value)(walk(v) for v in value)
        return _masked_object(value, found, walk)

    return walk


_REBUILT = {
    "TextMetadataValue": "text",
    "MarkdownMetadataValue": "md",
    "PathMetadataValue": "path",
    "UrlMetadataValue": "url",
    "NotebookMetadataValue": "notebook",
}


def _is_dagster(value: Any) -> bool:
    return (type(value).__module__ or "").startswith("dagster")


def _masked_object(value: Any, masking: Masker, walk: Callable[[Any], Any]) -> Any:
    """A Dagster metadata value (text, markdown, JSON, path, URL, table schema...) showing a secret, rebuilt
    masked; any other object as it is."""
    if value is None or isinstance(value, (bool, int, float)) or not _is_dagster(value):
        return value
    from dagster import MetadataValue, serialize_value

    inner, kind = getattr(value, "value", None), type(value).__name__
    if kind in _REBUILT and isinstance(inner, str):
        return getattr(MetadataValue, _REBUILT[kind])(masking(inner)) if masking.contains(inner) else value
    if kind == "JsonMetadataValue":
        masked = walk(inner)
        return value if masked == inner else MetadataValue.json(masked)
    try:
        text = serialize_value(value)
    except Exception:
        text = str(value)
    return MetadataValue.text(masking(str(value if inner is None else inner))) if masking.contains(text) else value


class MaskingLog:
    """Wraps a step's logger (Dagster's `context.log`): secret values in a message become `********`."""

    def __init__(self, log: Any, values: Iterable[str]):
        self._log = log
        self._values = _maskable(values)

    def _emit(self, level: str, msg: Any, *args: Any, **kwargs: Any) -> None:
        text = str(msg)
        if args:
            try:
                text = text % args
            except (TypeError, ValueError):
                text = " ".join([text, *map(str, args)])
        getattr(self._log, level)(mask(text, self._values), **{k: v for k, v in kwargs.items() if k != "exc_info"})

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("debug", msg, *args, **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("info", msg, *args, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("warning", msg, *args, **kwargs)

    warn = warning

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("error", msg, *args, **kwargs)

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("critical", msg, *args, **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("error", msg, *args, **kwargs)

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        name = logging.getLevelName(level).lower()
        self._emit(name if name in ("debug", "info", "warning", "error", "critical") else "info", msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def leaks(exc: BaseException, values: Iterable[str]) -> bool:
    """Whether an exception's text (messages of its whole chain, traceback included) holds a secret."""
    values = _maskable(values)
    if not values:
        return False
    text = "".join(traceback.format_exception(exc))
    return masker(values).contains(text)


def masked_failure(exc: BaseException, values: Iterable[str]):
    """A Dagster Failure carrying the exception's text with secrets masked (its traceback as metadata)."""
    from dagster import Failure, MetadataValue

    text = mask("".join(traceback.format_exception(exc)), values)
    message = mask(f"{type(exc).__name__}: {exc}", values)
    return Failure(description=message, metadata={keys.TRACEBACK: MetadataValue.text(text)})


class MaskedError(ExoError):
    """Stands in for an exception whose text held a secret and could not be masked in place (a custom `__str__`)."""


_TEXT_ATTRIBUTES = ("filename", "filename2", "strerror", "text")  # OSError and SyntaxError slots that str() shows


def mask_exception(exc: BaseException, values: Iterable[str] | Masker) -> BaseException:
    """`exc` with every secret masked out of its text and out of each exception chained to it (`__cause__`,
    `__context__`, notes): Dagster stores each one's message and stack lines, never frame locals. Masked in
    place where that cleans it (its type still decides retries and the error kind); otherwise a MaskedError,
    or a Failure for a Failure, carrying the masked text, the same traceback and the cleaned chain."""
    masking = values if isinstance(values, Masker) else masker(values)
    if not masking:
        return exc
    return _mask_chain(exc, masking, {})


def _mask_chain(exc: BaseException, masking: Masker, seen: dict[int, BaseException]) -> BaseException:
    if id(exc) in seen:
        return seen[id(exc)]
    seen[id(exc)] = exc
    suppress = exc.__suppress_context__
    for link in ("__cause__", "__context__"):
        linked = getattr(exc, link)
        if linked is not None:
            cleaned = _mask_chain(linked, masking, seen)
            if cleaned is not linked:
                setattr(exc, link, cleaned)
    exc.__suppress_context__ = suppress  # setting __cause__ turns it on
    if not _shows_secret(exc, masking):
        return exc
    _mask_in_place(exc, masking)
    if not _shows_secret(exc, masking):
        return exc
    text = masking(f"{type(exc).__name__}: {_text(exc)}")
    if (failure := _as_failure(exc)) is not None:
        from dagster import Failure

        replacement: BaseException = Failure(
            description=masking(_text(exc)),
            allow_retries=failure.allow_retries,
            metadata=mask_value(dict(failure.metadata or {}), masking.values),
        )
    else:
        replacement = MaskedError(text)
    replacement.__cause__, replacement.__context__ = exc.__cause__, exc.__context__
    replacement.__suppress_context__ = exc.__suppress_context__
    seen[id(exc)] = replacement.with_traceback(exc.__traceback__)
    return replacement


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return ""


class _FailureLike(Protocol):
    """What masking reads of a Dagster `Failure` (the SDK imports no Dagster, so it is recognised by name)."""

    description: str | None
    allow_retries: bool
    metadata: Mapping[str, Any] | None


def _as_failure(exc: BaseException) -> _FailureLike | None:
    """`exc` when it is a Dagster `Failure`, else None."""
    is_failure = any(c.__name__ == "Failure" and c.__module__.startswith("dagster") for c in type(exc).__mro__)
    return cast(_FailureLike, exc) if is_failure else None


def _shows_secret(exc: BaseException, masking: Masker) -> bool:
    """Whether what a traceback shows of `exc` (text, notes, a Failure's description and metadata) holds a secret."""
    parts = [_text(exc), *map(str, getattr(exc, "__notes__", None) or ())]
    parts += [str(getattr(exc, name)) for name in _TEXT_ATTRIBUTES if getattr(exc, name, None) is not None]
    if (failure := _as_failure(exc)) is not None:
        parts.append(str(failure.description or ""))
        if mask_value(dict(failure.metadata or {}), masking.values) != dict(failure.metadata or {}):
            return True
    return any(masking.contains(part) for part in parts)


def _mask_in_place(exc: BaseException, masking: Masker) -> None:
    """Mask the exception's arguments, string attributes, notes and (a Failure's) description and metadata."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return masking(value)
        if isinstance(value, (bytes, int, float, bool, type(None))):
            return value
        return masking(str(value)) if masking.contains(str(value)) else value

    try:
        exc.args = tuple(clean(a) for a in exc.args)
    except (AttributeError, TypeError):
        pass
    for name, value in list(getattr(exc, "__dict__", {}).items()):
        if name == "metadata" and isinstance(value, dict):
            value = mask_value(value, masking.values)
        elif isinstance(value, str):
            value = masking(value)
        else:
            continue
        try:
            setattr(exc, name, value)
        except (AttributeError, TypeError):
            pass
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [masking(str(n)) for n in notes]
    for name in _TEXT_ATTRIBUTES:
        value = getattr(exc, name, None)
        if value is not None and masking.contains(str(value)):
            try:
                setattr(exc, name, masking(str(value)))
            except (AttributeError, TypeError):
                pass


def mask_output(value: Any, values: Iterable[str]) -> Any:
    """A satellite's returned table with secret values masked in its string columns (lazily, vectorised)."""
    values = _maskable(values)
    if not values:
        return value
    import duckdb
    import polars as pl

    from exo_dagster.sdk.table import StoredTable

    if isinstance(value, (list, dict)):
        return mask_value(value, values)
    if isinstance(value, StoredTable):
        value = value.lazy()
    elif isinstance(value, duckdb.DuckDBPyRelation):
        value = value.pl()
    if not isinstance(value, (pl.DataFrame, pl.LazyFrame)):
        return value
    masking = masker(values)
    schema = value.collect_schema() if isinstance(value, pl.LazyFrame) else value.schema
    if any(masking.contains(name) for name in schema):  # a column named by a secret (a pivot on it) is renamed
        value = value.rename(_masked_names(list(schema), masking))
        schema = value.collect_schema() if isinstance(value, pl.LazyFrame) else value.schema
    text_columns = [name for name, dtype in schema.items() if dtype == pl.Utf8]
    other_columns = {name: dtype for name, dtype in schema.items() if dtype != pl.Utf8 and _holds_text(dtype)}
    if not text_columns and not other_columns:
        return value
    # Rust's regex finds the candidate cells vectorised; only those go through the Python masker.
    pattern = "|".join(
        re.escape(f[:FRAGMENT]) if len(f) >= FRAGMENT else re.escape(f)
        for f in {w for form in masking.forms for w in _windows_of(form)}
    )

    def mask_series(series: pl.Series) -> pl.Series:
        hits = series.str.contains(pattern).fill_null(False)
        if not hits.any():
            return series
        values_ = series.to_list()
        for i in hits.arg_true().to_list():
            values_[i] = masking(values_[i])
        return pl.Series(series.name, values_, dtype=pl.Utf8)

    def mask_other(series: pl.Series) -> pl.Series:
        """Lists, structs, binary and categorical cells (rare column types): through Python, keeping the type."""
        if isinstance(series.dtype, (pl.Categorical, pl.Enum)):
            masked = mask_series(series.cast(pl.Utf8))
            return masked if isinstance(series.dtype, pl.Enum) else masked.cast(series.dtype)
        return pl.Series(series.name, [_mask_cell(c, masking) for c in series.to_list()], dtype=series.dtype)

    exprs = [pl.col(name).map_batches(mask_series, return_dtype=pl.Utf8).alias(name) for name in text_columns]
    exprs += [
        pl.col(name).map_batches(mask_other, return_dtype=pl.Utf8 if isinstance(dtype, pl.Enum) else dtype).alias(name)
        for name, dtype in other_columns.items()
    ]
    return value.with_columns(exprs)


def _masked_names(names: list[str], masking: Masker) -> dict[str, str]:
    taken, renamed = set(names), {}
    for name in names:
        if masking.contains(name):
            new, n = masking(name), 1
            while new in taken:
                n += 1
                new = f"{masking(name)}_{n}"
            taken.add(new)
            renamed[name] = new
    return renamed


def _holds_text(dtype: Any) -> bool:
    """Whether a Polars type carries text or bytes other than as a plain string column (nested, binary, categorical)."""
    import polars as pl

    if dtype == pl.Utf8 or dtype == pl.Binary or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return True
    if isinstance(dtype, (pl.List, pl.Array)):
        return _holds_text(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(_holds_text(field.dtype) for field in dtype.fields)
    return False


def _mask_cell(value: Any, masking: Masker) -> Any:
    if isinstance(value, str):
        return masking(value)
    if isinstance(value, bytes):
        text = value.decode("utf-8", "surrogateescape")
        return masking(text).encode("utf-8", "surrogateescape") if masking.contains(text) else value
    if isinstance(value, list):
        return [_mask_cell(v, masking) for v in value]
    if isinstance(value, dict):
        return {k: _mask_cell(v, masking) for k, v in value.items()}
    return value


def _windows_of(form: str) -> list[str]:
    if len(form) < FRAGMENT:
        return [form]
    return [form[i : i + FRAGMENT] for i in range(len(form) - FRAGMENT + 1)]
