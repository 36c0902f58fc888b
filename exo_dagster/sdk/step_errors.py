"""What a failed step reports, and whether it is worth retrying.

A satellite's exception becomes a Dagster `Failure` whose description is the satellite's own message
and whose metadata points back to the YAML (`exo/source` FILE:LINE:COL, the step and satellite ids), so
the UI, `${{ failure.error }}` and the logs lead with what went wrong and where, not with Dagster's
wrapper and a stack trace. Errors fall in three kinds:

- permanent: the spec, the config or the data is wrong (missing folder or file, unreadable or
  unsniffable file, bad SQL, missing column, schema mismatch, HTTP 4xx): retrying cannot help, so the
  step fails at once (`Failure(allow_retries=False)`), whatever its `retries:`;
- transient: the network, a timeout, HTTP 5xx/429/408: retried by the step's policy;
- a bug (anything else, e.g. AttributeError): raised as is, stack trace and retries included.

Satellites can say it themselves with `PermanentError` / `TransientError` (exo's `UserError` and
`TransientError`, exo_dagster/errors.py); any exo error decides its kind by its type. Builtin and third-party
exceptions (OSError, ValueError, DuckDB's and Polars' query errors, HTTP clients') are sorted by
`_foreign_kind`, the one place that names them.

Each failure also names its cause (`cause`: missing-file, permission, bad-value, remote, bug) and, where the
satellite knows it, the config or input key that led to it (`config_key`, e.g. `path` or `input.paths`), so
`exo/source` points at that key in the YAML rather than at the step's first line.
"""

from __future__ import annotations

import contextlib
import errno
import re
from typing import TypeVar

from exo_dagster import errors

E = TypeVar("E", bound=BaseException)

# attributes set on any exception (a satellite's, a library's) to say where in the YAML its cause is written
CONFIG_KEY_ATTR = "config_key"  # the config key (`path`) or input key (`input.paths`) that led to it
TEMPLATE_ATTR = "template"  # the `${{ }}` template whose value failed

PERMANENT, TRANSIENT, BUG = "permanent", "transient", "bug"
_STATUS = re.compile(r"\banswered (\d{3})\b")
_TRANSIENT_STATUS = {408, 425, 429}


MISSING_FILE, PERMISSION, BAD_VALUE, REMOTE = "missing-file", "permission", "bad-value", "remote"


class PermanentError(errors.UserError, ValueError):
    """Raise from a satellite for an error that no retry can fix (bad input, bad config);
    `config_key` names the config field (or `input.KEY`) that caused it."""

    def __init__(self, *args, config_key: str | None = None):
        super().__init__(*args)
        if config_key:
            self.config_key = config_key


class TransientError(errors.TransientError, RuntimeError):
    """Raise from a satellite for an error worth retrying (a service that is down or busy)."""

    def __init__(self, *args, config_key: str | None = None):
        super().__init__(*args)
        if config_key:
            self.config_key = config_key


class MissingFile(errors.UserError, FileNotFoundError):
    """A file (or folder) the step reads is not there: says so, with the absolute path it looked at."""

    def __init__(self, path: str, satellite: str = "", *, what: str = "file", config_key: str | None = None):
        super().__init__(errno.ENOENT, f"missing {what}", path)
        self.satellite, self.what = satellite, what
        if config_key:
            self.config_key = config_key

    def __str__(self) -> str:
        return f"{self.satellite}: " * bool(self.satellite) + f"missing {self.what}: {self.filename}"

    def __reduce__(self):  # pickled with its own arguments (OSError's would rebuild a different error)
        return (type(self), (self.filename, self.satellite), {"what": self.what, **self.__dict__})


def at_key(exc: E, key: str) -> E:
    """Mark `exc` as caused by config key `key` (or `input.KEY`), unless a deeper layer already named one."""
    return _marked(exc, CONFIG_KEY_ATTR, key)


def at_template(exc: E, text: str) -> E:
    """Mark `exc` as raised by the value of template `text`, unless a deeper layer already named one."""
    return _marked(exc, TEMPLATE_ATTR, text)


def _marked(exc: E, attribute: str, value: str) -> E:
    if getattr(exc, attribute, None) is None:
        with contextlib.suppress(AttributeError):  # an exception type without a __dict__: nothing to point at
            setattr(exc, attribute, value)
    return exc


def _named(exc: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _module(exc: BaseException) -> str:
    return type(exc).__module__ or ""


def kind(exc: BaseException) -> str:
    """PERMANENT, TRANSIENT or BUG for a satellite's exception: exo's own errors by their branch of the root
    (exo_dagster/errors.py), any other by `_foreign_kind`."""
    if isinstance(exc, errors.TransientError):
        return TRANSIENT
    if isinstance(exc, errors.UserError):
        return PERMANENT
    if isinstance(exc, errors.ExoBug):
        return BUG
    return _foreign_kind(exc)


def _foreign_kind(exc: BaseException) -> str:
    """The kind of an exception exo did not raise on purpose: an HTTP status, the builtin OSError/ValueError
    families, DuckDB's and Polars' errors about the query or the data (the third-party types recognised)."""
    status = _http_status(exc)
    if status is not None:
        return TRANSIENT if status >= 500 or status in _TRANSIENT_STATUS else PERMANENT
    if isinstance(exc, (TimeoutError, ConnectionError)) or _named(
        exc, "TransportError", "TimeoutException", "URLError", "HTTPException", "RemoteDisconnected"
    ):
        return TRANSIENT
    if isinstance(
        exc,
        (
            FileNotFoundError,
            NotADirectoryError,
            IsADirectoryError,
            PermissionError,
            FileExistsError,
            UnicodeError,
            ValueError,
            LookupError,
        ),
    ):
        return PERMANENT  # also pydantic's ValidationError (a ValueError) and read errors of satellites
    if _module(exc).lstrip("_").startswith("duckdb") and not _named(
        exc, "InternalException", "FatalException", "HTTPException"
    ):
        return PERMANENT  # Binder/Catalog/Parser/Conversion/InvalidInput/IO: the query or the data is wrong
    if _module(exc).startswith("polars") and _named(
        exc,
        "ColumnNotFoundError",
        "SchemaError",
        "SchemaFieldNotFoundError",
        "ShapeError",
        "InvalidOperationError",
        "ComputeError",
        "NoDataError",
        "DuplicateError",
    ):
        return PERMANENT
    return BUG


def cause(exc: BaseException) -> str:
    """What went wrong, in words a user can act on: MISSING_FILE, PERMISSION, REMOTE (an HTTP status, the
    network, a timeout, the mail server), BAD_VALUE (the config or the data) or BUG."""
    duckdb_missing = (
        _module(exc).lstrip("_").startswith("duckdb") and _named(exc, "IOException") and "No files found" in str(exc)
    )
    if isinstance(exc, FileNotFoundError) or duckdb_missing:
        return MISSING_FILE
    if isinstance(exc, PermissionError):
        return PERMISSION
    if (
        isinstance(exc, errors.TransientError)
        or _http_status(exc) is not None
        or _module(exc) == "smtplib"
        or (kind(exc) == TRANSIENT and not isinstance(exc, errors.UserError))
    ):
        return REMOTE
    return BUG if kind(exc) == BUG else BAD_VALUE


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None) or getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if isinstance(code, int):
        return code
    if _named(exc, "HttpStatusError", "HTTPStatusError"):
        match = _STATUS.search(str(exc))
        return int(match.group(1)) if match else None
    return None


def message(exc: BaseException) -> str:
    """The satellite's own words; the exception's class only where the message alone says little."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    if (
        isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError))
        and exc.filename
        and str(exc.filename) not in text
    ):
        text = f"{text}: {exc.filename}"
    return text
