"""Secret values: read at run time from a secrets backend, never stored, masked wherever they could show.

A cluster names where each secret comes from (`OPENAI_API_KEY: ${{ env.OPENAI_API_KEY }}`); the
configured backend answers for that name at run time. The default backend is the process
environment; `EXO_SECRETS_BACKEND` picks others, tried in order, e.g. `file:/run/secrets,env`
(Docker/Kubernetes secret files first, then the environment) or `my_pkg.vault:VaultBackend`
(any class with `get(name) -> str | None`).

Everything a satellite can emit passes through `mask`: its log lines (`MaskingLog`), its errors and their
chains wherever in the step they are raised (`mask_exception`, through `leak_guard.masked`), its metadata
and its output table (`mask_output`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from exo_dagster.errors import UserError
from exo_dagster.sdk.masking import (  # noqa: F401  (re-exported: the runtime masks through this module)
    FRAGMENT,
    MASK,
    MIN_MASKED_LENGTH,
    MaskedError,
    Masker,
    MaskingLog,
    encoded_forms,
    leaks,
    mask,
    mask_exception,
    mask_output,
    mask_value,
    masked_failure,
    masker,
)
from exo_dagster.spec.ir import SecretSource

BACKEND_ENV = "EXO_SECRETS_BACKEND"


class MissingSecret(UserError, RuntimeError):
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
        return " or ".join(_described(b, name) for b in self.backends)


def _described(backend: SecretBackend, name: str) -> str:
    """Where `backend` looks for secret `name`, in its own words when it has a `describe`."""
    describe = getattr(backend, "describe", None)
    return describe(name) if describe is not None else f"{type(backend).__name__} `{name}`"


def backend_from_spec(spec: str | None, environ: Mapping[str, str] | None = None) -> SecretBackend:
    """Build the backend that `EXO_SECRETS_BACKEND` names (comma-separated, tried in order)."""
    parts = [p.strip() for p in (spec or "env").split(",") if p.strip()] or ["env"]
    backends: list[SecretBackend] = []
    for part in parts:
        if part == "env":
            backends.append(EnvBackend(environ))
        elif part.startswith("file:"):
            backends.append(FileBackend(part[len("file:") :]))
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
            raise BackendError(
                f"{BACKEND_ENV}: unknown secrets backend `{part}`; use env, file:/folder or module:Class"
            )
    return backends[0] if len(backends) == 1 else ChainBackend(backends)


def default_backend(environ: Mapping[str, str] | None = None) -> SecretBackend:
    env = os.environ if environ is None else environ
    return backend_from_spec(env.get(BACKEND_ENV), environ)


def secret_value(
    name: str, source: SecretSource, environ: Mapping[str, str] | None = None, backend: SecretBackend | None = None
) -> str:
    if source.kind == "literal":
        return source.literal or ""
    backend = backend or default_backend(environ)
    value = backend.get(source.name)
    if value is None:
        where = getattr(backend, "describe", lambda n: f"`{n}`")(source.name)
        hint = (
            f"export {source.name}=... before launching the run"
            if isinstance(backend, EnvBackend)
            else f"store `{source.name}` in the secrets backend ({BACKEND_ENV})"
        )
        raise MissingSecret(f"secret `{name}` reads {where}, which is not set; {hint}")
    return value


def resolve_all(
    sources: Mapping[str, SecretSource], environ: Mapping[str, str] | None = None, backend: SecretBackend | None = None
) -> dict[str, str]:
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


def visible_sources(cluster: Any, step: Any) -> list[SecretSource]:
    """The secrets one step can see: its `config.secrets` plus `${{ secrets.X }}` in its config and input."""
    from exo_dagster.sdk import templates

    sources = list(step.secrets.values())
    for section in (step.config, step.spec.input):
        for _, text in templates.walk_strings(section):
            if not templates.has_template(text):
                continue
            try:
                refs = templates.parse(text).references
            except templates.TemplateSyntaxError:
                continue
            sources += [
                cluster.secrets[r.parts[0]] for r in refs if r.root == "secrets" and r.parts[0] in cluster.secrets
            ]
    return sources


def visible_values(
    cluster: Any, step: Any, environ: Mapping[str, str] | None = None, sources: list[SecretSource] | None = None
) -> list[str]:
    """The values of `visible_sources` that can be read now: what this step's logs, errors and output must not show.
    `sources`: `visible_sources(cluster, step)` found once (it depends on the spec only; the values are read each
    time)."""
    if sources is None:
        sources = visible_sources(cluster, step)
    return known_values({str(i): s for i, s in enumerate(sources)}, environ) if sources else []
