"""Secret values: read at run time from a secrets backend, never stored, masked wherever they could show.

A cluster names where each secret comes from (`OPENAI_API_KEY: ${{ env.OPENAI_API_KEY }}`); the
configured backend answers for that name at run time. The default backend is the process
environment; `EXO_SECRETS_BACKEND` picks others, tried in order, e.g. `file:/run/secrets,env`
(Docker/Kubernetes secret files first, then the environment) or `my_pkg.vault:VaultBackend`
(any class with `get(name) -> str | None`).

Everything a satellite can emit passes through `mask`: its log lines (`MaskingLog`), its error
messages (`masked_failure`), its metadata and its output table (`mask_output`).
"""

from __future__ import annotations

import importlib
import logging
import os
import traceback
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

from .parser import SecretSource

MASK = "********"
BACKEND_ENV = "EXO_SECRETS_BACKEND"
MIN_MASKED_LENGTH = 4  # shorter values would mask ordinary words; such secrets are refused by no one, but not masked


class MissingSecret(RuntimeError):
    pass


class BackendError(MissingSecret, ValueError):
    """`EXO_SECRETS_BACKEND` names a backend that cannot be built: a setup mistake, never retried."""


@runtime_checkable
class SecretBackend(Protocol):
    """Where secret values live. `get` returns None for a name it does not hold (never raises for that)."""

    def get(self, name: str) -> str | None: ...


class EnvBackend:
    """Secrets from environment variables (the default)."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = os.environ if environ is None else environ

    def get(self, name: str) -> str | None:
        return self.environ.get(name)

    def describe(self, name: str) -> str:
        return f"environment variable `{name}`"


class FileBackend:
    """Secrets as files named after them in one folder (Docker and Kubernetes mount secrets like this)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def get(self, name: str) -> str | None:
        if "/" in name or "\\" in name or name in (".", ".."):
            return None
        try:
            return (self.folder / name).read_text(encoding="utf-8").rstrip("\r\n")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def describe(self, name: str) -> str:
        return f"file `{self.folder / name}`"


class ChainBackend:
    """Asks several backends in order; the first that holds the name wins."""

    def __init__(self, backends: Iterable[SecretBackend]):
        self.backends = list(backends)

    def get(self, name: str) -> str | None:
        for backend in self.backends:
            value = backend.get(name)
            if value is not None:
                return value
        return None

    def describe(self, name: str) -> str:
        return " or ".join(getattr(b, "describe", lambda n: f"{type(b).__name__} `{n}`")(name) for b in self.backends)


def backend_from_spec(spec: str | None, environ: Mapping[str, str] | None = None) -> SecretBackend:
    """Build the backend that `EXO_SECRETS_BACKEND` names (comma-separated, tried in order)."""
    parts = [p.strip() for p in (spec or "env").split(",") if p.strip()] or ["env"]
    backends: list[SecretBackend] = []
    for part in parts:
        if part == "env":
            backends.append(EnvBackend(environ))
        elif part.startswith("file:"):
            backends.append(FileBackend(part[len("file:"):]))
        elif ":" in part:
            module, _, attr = part.partition(":")
            try:
                backend = getattr(importlib.import_module(module), attr)()
            except (ImportError, AttributeError) as exc:
                raise BackendError(f"{BACKEND_ENV}: cannot load secrets backend `{part}`: {exc}") from None
            if not isinstance(backend, SecretBackend):
                raise BackendError(f"{BACKEND_ENV}: `{part}` has no `get(name)` method")
            backends.append(backend)
        else:
            raise BackendError(f"{BACKEND_ENV}: unknown secrets backend `{part}`; use env, file:/folder or module:Class")
    return backends[0] if len(backends) == 1 else ChainBackend(backends)


def default_backend(environ: Mapping[str, str] | None = None) -> SecretBackend:
    env = os.environ if environ is None else environ
    return backend_from_spec(env.get(BACKEND_ENV), environ)


def secret_value(name: str, source: SecretSource, environ: Mapping[str, str] | None = None,
                 backend: SecretBackend | None = None) -> str:
    if source.kind == "literal":
        return source.literal or ""
    backend = backend or default_backend(environ)
    value = backend.get(source.name)
    if value is None:
        where = getattr(backend, "describe", lambda n: f"`{n}`")(source.name)
        hint = f"export {source.name}=... before launching the run" if isinstance(backend, EnvBackend) else \
            f"store `{source.name}` in the secrets backend ({BACKEND_ENV})"
        raise MissingSecret(f"secret `{name}` reads {where}, which is not set; {hint}")
    return value


def resolve_all(sources: Mapping[str, SecretSource], environ: Mapping[str, str] | None = None,
                backend: SecretBackend | None = None) -> dict[str, str]:
    backend = backend or default_backend(environ)
    return {name: secret_value(name, source, environ, backend) for name, source in sources.items()}


def known_values(sources: Mapping[str, SecretSource], environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value that can be read now (unset ones are skipped): what to mask in a step's output."""
    try:
        backend = default_backend(environ)
    except BackendError:
        return [s.literal for s in sources.values() if s.kind == "literal" and s.literal]
    values = []
    for name, source in sources.items():
        try:
            values.append(secret_value(name, source, environ, backend))
        except MissingSecret:
            continue
    return [v for v in values if v]


def _maskable(values: Iterable[str]) -> list[str]:
    return sorted({v for v in values if v and len(v) >= MIN_MASKED_LENGTH}, key=len, reverse=True)


def mask(text: str, values: Iterable[str]) -> str:
    """Replace every secret value (of 4+ chars, to avoid masking noise) in `text`."""
    for value in _maskable(values):
        text = text.replace(value, MASK)
    return text


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
    if isinstance(text, str) and any(v in text for v in values):
        return mask(text, values)
    return value


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
    return any(v in text for v in values)


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

    from .table import StoredTable

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
    exprs = []
    for name in text_columns:
        expr = pl.col(name)
        for secret in values:
            expr = expr.str.replace_all(secret, MASK, literal=True)
        exprs.append(expr.alias(name))
    return value.with_columns(exprs)


def visible_sources(cluster: Any, step: Any) -> list[SecretSource]:
    """The secrets one step can see: its `config.secrets` plus `${{ secrets.X }}` in its config and input."""
    from . import templates

    sources = list(step.secrets.values())
    for section in (step.config, step.spec.input):
        for _, text in templates.walk_strings(section):
            if not templates.has_template(text):
                continue
            try:
                refs = templates.parse(text).references
            except templates.TemplateSyntaxError:
                continue
            sources += [cluster.secrets[r.parts[0]] for r in refs if r.root == "secrets" and r.parts[0] in cluster.secrets]
    return sources


def visible_values(cluster: Any, step: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of `visible_sources` that can be read now: what this step's logs, errors and output must not show."""
    return known_values({str(i): s for i, s in enumerate(visible_sources(cluster, step))}, environ)
