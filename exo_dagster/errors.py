"""The root of exo's exceptions: what went wrong decides what happens next, by type, not by a list of names.

- `UserError`: a mistake in a cluster, its config or its data; located where possible (`config_key`, the
  key in the YAML that led to it) and never retried: it cannot heal itself.
- `TransientError`: worth a retry (the network, HTTP 5xx/429, a lock or a step that timed out).
- `ExoBug`: exo itself is wrong; shown with its stack trace.
- `ExoError` alone: a signal that is none of those (a cancelled wait, a stand-in for a masked error).

Most classes beneath also keep the builtin base they had (ValueError, PermissionError, TimeoutError...), so
`except ValueError` and the like still catch them. A leaf module: it imports nothing from exo_dagster, so
every layer and every satellite may import it.
"""

from __future__ import annotations


class ExoError(Exception):
    """Every exception exo raises on purpose."""

    config_key: str | None = None  # the config key (`path`) or input key (`input.paths`) that led to it
    template: str | None = None  # the `${{ ... }}` template that failed, when one did (it is located too)


class UserError(ExoError):
    """A mistake in a cluster, its config or its data: reported with where it is written, never retried."""


class TransientError(ExoError):
    """A failure that may not happen again (network, busy service, lock timeout): retried by the step's policy."""


class ExoBug(ExoError):
    """An internal error: exo broke one of its own rules."""
