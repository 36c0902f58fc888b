"""One writer at a time per write target: a lock file beside it, waited for with a bound.

Append and upsert read the target, combine and write it back; two runs doing that at once would each
write their own combination and lose the other's rows. Holding a lock file for the target (a `filelock`,
released when a process dies) around the whole read-modify-write makes the second run wait and then
build on the first one's result. Lock files live in `<data folder>/locks/`, so runs that share a data
folder on one machine queue (remote targets included); runs on other machines are not seen.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from filelock import FileLock, Timeout

from exo_dagster.errors import TransientError
from exo_dagster.sdk import paths
from exo_dagster.sdk.hashing import short_hash

ENV = "EXO_LOCK_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


class TargetBusy(TransientError, TimeoutError):
    """Another run held the target longer than the wait allows."""


def lock_path(target: str, data_dir: str | None = None) -> str:
    """`<data folder>/locks/<sha256 of the target>.lock`: the target's own folder stays clean, and every
    run of one deployment (one data folder) meets at the same file, whatever spelling of the path it used."""
    if not paths.is_url(target) or target.startswith("file://"):
        target = os.path.realpath(target[len("file://") :] if target.startswith("file://") else target)
    folder = os.path.join(data_dir or paths.data_dir(), "locks")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, short_hash(target, 32) + ".lock")


def timeout_s() -> float:
    return float(os.environ.get(ENV) or DEFAULT_TIMEOUT_S)


@contextlib.contextmanager
def locked(target: str, timeout: float | None = None, data_dir: str | None = None) -> Iterator[None]:
    wait = timeout_s() if timeout is None else timeout
    path = lock_path(target, data_dir)
    try:
        with FileLock(path, timeout=wait):
            yield
    except Timeout:
        raise TargetBusy(
            f"`{target}` is being written by another run and stayed locked for {wait:g}s ({path}); "
            f"run again later, or raise {ENV}"
        ) from None
