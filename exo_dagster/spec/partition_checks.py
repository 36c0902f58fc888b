"""Checks of `partitions:` and of `${{ partition.* }}` templates that need the raw mapping or the whole cluster.

The pydantic model (models.Partitions) checks each field; these read the raw YAML, so "two kinds", an empty
or a duplicated static key are reported even when a field inside has an error too.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

PARTITION_KINDS = ("hourly", "daily", "weekly", "monthly")
INVALID_PARTITION_SUBSTRINGS = (
    "...",
    "\a",
    "\b",
    "\f",
    "\n",
    "\r",
    "\t",
    "\v",
    "\0",
)  # Dagster's (partitions/utils/base.py)

KINDS = (*PARTITION_KINDS, "static")
PATH = ("cluster", "partitions")
Report = Callable[..., None]  # _Checker.error(path, message, hint, key=...)

# A partition is stored as `<key, %-encoded>.parquet`, written first as `.<that>.<pid>-<32 hex>.tmp`: 54 characters
# around the encoded key, and a file name has at most 255 bytes (ext4, APFS, NTFS), so the encoded key may have 200.
# %-encoding makes a character up to 12 long (`€` -> `%E2%82%AC`), so a key also has at most 100 characters.
MAX_KEY_CHARS = 100
MAX_ENCODED_KEY = 200
KEY_HINT = (
    f"a partition key has at most {MAX_KEY_CHARS} characters ({MAX_ENCODED_KEY} once %-encoded for its file "
    "name) and no `/`, `\\`, `..`, `...` or control characters (newline, tab, ESC, ...)"
)
_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Cs": "a lone surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def encoded_key(key: str) -> str:
    """The key as its file is named (storage/io_manager.partition_file_stem): %-encoded, dots too."""
    return quote(key, safe="-_").replace(".", "%2E")


def partition_key_problem(key: str) -> str | None:
    """Why `key` cannot be a partition key (it would not make a file name, or not one of its own), else None.
    The same rule at validate time (static keys) and at run time (a key a run brings)."""
    shown = repr(key if len(key) <= 40 else key[:40] + "...")
    if not key.strip():
        return "a partition key cannot be empty"
    dagster = [s for s in INVALID_PARTITION_SUBSTRINGS if s in key]
    if dagster:
        return f"partition key {shown} holds {dagster[0]!r}, which Dagster does not allow in a partition key"
    for char in key:
        what = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if what:
            return f"partition key {shown} holds {char!r}, {what}"
    for part, what in (("/", "a path separator"), ("\\", "a path separator"), ("..", "a parent-folder step")):
        if part in key:
            return f"partition key {shown} holds {part!r}, {what}"
    if len(key) > MAX_KEY_CHARS:
        return f"partition key {shown} has {len(key)} characters; the most is {MAX_KEY_CHARS}"
    encoded = len(encoded_key(key).encode())
    if encoded > MAX_ENCODED_KEY:
        return (
            f"partition key {shown} is {encoded} characters once %-encoded for its file name; "
            f"the most is {MAX_ENCODED_KEY}"
        )
    return None


def partition_kind(raw: Any) -> str | None:
    """ "static", "time" or None (no `partitions:`), read from the raw mapping (an invalid one counts as written)."""
    if not isinstance(raw, dict) or not raw:
        return None if raw is None else "invalid"
    if "static" in raw and not any(k in raw for k in PARTITION_KINDS):
        return "static"
    return "time" if any(k in raw for k in PARTITION_KINDS) else "invalid"


def check_partitions(raw: Any, error: Report) -> None:
    if not isinstance(raw, dict):
        return  # absent, or of the wrong type: the whole-file validation reports it
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) > 1:
        error(
            PATH + (kinds[1],),
            f"`partitions` has one kind, got {', '.join(kinds)}",
            "keep one of them: a cluster is partitioned by time (hourly, daily, weekly, monthly) or by `static` keys",
            key=True,
        )
    elif not kinds and not (raw.keys() - set(KINDS)):
        error(
            PATH,
            "`partitions` needs a kind",
            'write e.g. `daily: {start: "2026-11-01"}` or `static: [eu, us]`',
            key=True,
        )
    static = raw.get("static")
    if isinstance(static, list):
        if not static:
            error(
                PATH + ("static",),
                "`static` needs at least one partition key",
                "list the keys, e.g. `static: [eu, us, apac]`",
            )
        seen: set[str] = set()
        for i, key in enumerate(static):
            text = str(key)
            if text in seen:
                error(
                    PATH + ("static", i),
                    f"duplicate partition key `{text}`",
                    "each static partition key may appear once",
                )
            seen.add(text)


def check_partition_reference(kind: str | None, field: str, text: str) -> tuple[str, str] | None:
    """(message, hint) when `${{ partition.FIELD }}` cannot be resolved in a cluster with partitions of `kind`."""
    if kind is None:
        return (
            f"`{text}`: this cluster has no partitions; add `partitions:`",
            'e.g. `partitions: {daily: {start: "2026-11-01"}}` under `cluster:`, or remove the reference',
        )
    if kind == "static" and field in ("start", "end"):
        return (
            f"`{text}`: static partitions have no {field}",
            "use `${{ partition.key }}`; start and end exist for hourly, daily, weekly and monthly partitions",
        )
    return None


def check_trigger_kinds(partitions: Any, trigger: Any, error: Report) -> None:
    """A `files` or `after` trigger launches runs without a partition key, which a partitioned cluster refuses."""
    if partition_kind(partitions) is None:
        return
    listed = list(enumerate(trigger)) if isinstance(trigger, list) else [(None, trigger)]
    for index, one in listed:
        for kind in ("files", "after") if isinstance(one, dict) else ():
            if kind in one:
                path = ("cluster", "trigger") + ((index,) if index is not None else ()) + (kind,)
                error(
                    path,
                    f"a `{kind}` trigger cannot start a partitioned cluster: its runs would have no partition key",
                    "use a `cron` trigger (each tick runs the tick's partition), `exo run --partition KEY` or a "
                    "backfill",
                    key=True,
                )
