"""Secret values: read from the environment at run time, never stored, masked when shown."""

from __future__ import annotations

import os
from typing import Mapping

from .parser import SecretSource

MASK = "********"


class MissingSecret(RuntimeError):
    pass


def secret_value(name: str, source: SecretSource, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    if source.kind == "literal":
        return source.literal or ""
    if source.name not in environ:
        raise MissingSecret(f"secret `{name}` reads environment variable `{source.name}`, which is not set; "
                            f"export {source.name}=... before launching the run")
    return environ[source.name]


def resolve_all(sources: Mapping[str, SecretSource], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    return {name: secret_value(name, source, environ) for name, source in sources.items()}


def mask(text: str, values: list[str]) -> str:
    """Replace every secret value (of 4+ chars, to avoid masking noise) in `text`."""
    for value in sorted((v for v in values if v and len(v) >= 4), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
