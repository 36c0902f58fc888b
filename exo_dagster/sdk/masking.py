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
from typing import Any, Callable, Iterable

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
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value, safe=""),
             urllib.parse.quote(value), json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], raw.hex()}
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
        windows = {f[i:i + FRAGMENT] for f in self.forms if len(f) >= FRAGMENT for i in range(len(f) - FRAGMENT + 1)}
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
        return not any(text[i:i + FRAGMENT] in windows for i in range(len(text) - FRAGMENT + 1))

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
    if isinstance(value, (list, tuple)):
        return type(value)(mask_value(v, values) for v in value)
    text = getattr(value, "text", None)  # dagster TextMetadataValue / MarkdownMetadataValue
    if isinstance(text, str) and masker(values).contains(text):
        return mask(text, values)
    return value


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
        if isinstance(value, (list, tuple)):
            return type(value)(walk(v) for v in value)
        text = getattr(value, "text", None)  # dagster TextMetadataValue / MarkdownMetadataValue
        if isinstance(text, str) and found.contains(text):
            return found(text)
        return value

    return walk


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
    return Failure(description=message, metadata={"exo/traceback": MetadataValue.text(text)})


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
    schema = value.collect_schema() if isinstance(value, pl.LazyFrame) else value.schema
    text_columns = [name for name, dtype in schema.items() if dtype == pl.Utf8]
    if not text_columns:
        return value
    masking = masker(values)
    # Rust's regex finds the candidate cells vectorised; only those go through the Python masker.
    pattern = "|".join(re.escape(f[:FRAGMENT]) if len(f) >= FRAGMENT else re.escape(f)
                       for f in {w for form in masking.forms for w in _windows_of(form)})

    def mask_series(series: pl.Series) -> pl.Series:
        hits = series.str.contains(pattern).fill_null(False)
        if not hits.any():
            return series
        values_ = series.to_list()
        for i in hits.arg_true().to_list():
            values_[i] = masking(values_[i])
        return pl.Series(series.name, values_, dtype=pl.Utf8)

    exprs = [pl.col(name).map_batches(mask_series, return_dtype=pl.Utf8).alias(name) for name in text_columns]
    return value.with_columns(exprs)


def _windows_of(form: str) -> list[str]:
    if len(form) < FRAGMENT:
        return [form]
    return [form[i:i + FRAGMENT] for i in range(len(form) - FRAGMENT + 1)]
