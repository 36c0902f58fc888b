"""Temporary files of atomic writes: named after their writer, swept when the writer is gone.

A write goes to `.<name>.<pid>-<random>.tmp` beside its target and is renamed into place. A process
killed mid-write leaves that file behind; the next write of the same target removes every temporary
file of it whose process no longer runs (or, for a name without a pid, that is older than an hour).
"""

from __future__ import annotations

import os
import re
import time
import uuid

STALE_AFTER_S = 3600.0


def temp_path(target: str) -> str:
    """Where to write `target` first (same folder, so the rename is atomic)."""
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")


def temp_name_pattern(name: str) -> str:
    """A regular expression for the temporary names of targets whose names match the expression `name`
    (local `.<name>.<pid>-<hex>.tmp` and remote `.<name>.<hex>.tmp`): for code that must tell them apart."""
    return rf"\.{name}\.(?:\d+-)?[0-9a-f]{{32}}\.tmp"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(target: str, *, now: float | None = None) -> list[str]:
    """Remove orphaned temporary files of `target` (local paths only); returns what was removed."""
    folder, name = os.path.split(target)
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return []
    entries = [e for e in entries if e.startswith(("." + name + ".", name + "."))]  # the few that can match
    if not entries:
        return []
    pattern = re.compile(
        r"^\.?" + re.escape(name) + r"\.(?:(\d+)-)?[0-9a-f]{32}\.tmp$|^" + re.escape(name) + r"\.tmp-(\d+)$"
    )
    now = time.time() if now is None else now
    removed = []
    for entry in entries:
        match = pattern.match(entry)
        if not match:
            continue
        path = os.path.join(folder, entry)
        pid = match.group(1) or match.group(2)
        try:
            stale = (not _pid_alive(int(pid))) if pid else now - os.path.getmtime(path) > STALE_AFTER_S
            if stale:
                os.remove(path)
                removed.append(path)
        except OSError:
            continue  # gone already, or not ours to remove
    return removed
