"""Where a step may write, move or delete local files: inside allowed roots only.

Roots are the data folder (`EXO_DATA_DIR`, ...), for file operations on a cluster's inputs also
the cluster file's folder tree, plus what the operator lists in `EXO_ALLOWED_PATHS`
(os.pathsep-separated). A cluster file can never widen them. Paths are compared after resolving
`..`, `~` and symbolic links, so none of them leads outside. Remote URLs (s3://, memory://, ...)
are governed by the credentials the operator hands a step, not by these roots.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from exo_dagster.errors import UserError
from exo_dagster.sdk import paths, templates

ENV = "EXO_ALLOWED_PATHS"


class PathOutside(UserError, PermissionError):
    """A write, move or delete aimed outside the allowed roots."""


def operator_roots(environ=os.environ) -> list[str]:
    return [p for p in environ.get(ENV, "").split(os.pathsep) if p.strip()]


def roots(data_dir: str | None = None, *extra: str | None, environ=os.environ) -> list[str]:
    """The data folder (default: the environment's), `extra` folders (e.g. the cluster's folder) and
    the operator's roots, resolved."""
    found = [_real(r) for r in (data_dir or paths.data_dir(), *[e for e in extra if e], *operator_roots(environ))]
    return list(dict.fromkeys(found))


def is_local(path: str) -> bool:
    return not paths.is_url(path) or path.startswith("file://")


def _real(path: str) -> str:
    if path.startswith("file://"):
        path = path[len("file://") :]
    return os.path.realpath(os.path.expanduser(path))


def inside(path: str, allowed: Iterable[str]) -> bool:
    real = _real(path)
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in allowed)


def check(path: str, allowed: Iterable[str], what: str) -> str:
    """`path` (already resolved against its base) if it is remote or inside `allowed`, else PathOutside."""
    if not is_local(path):
        return path
    allowed = list(allowed)
    if path.startswith("~") or not inside(path, allowed):
        raise PathOutside(
            f"{what} `{path}` is outside the allowed folders ({', '.join(allowed)}); "
            f"write inside the data folder, or have the operator add the folder to {ENV}"
        )
    return path


def literal_problem(value: str, base: str, allowed: list[str] | None) -> str | None:
    """Why a literal config path (relative to `base`) leaves the `allowed` roots, or None.

    Templated values are checked at run time instead. `allowed` None means "not all roots are known
    here" (the cluster folder, when a model is built outside a cluster file): then only the rules
    that hold for any root are checked: no `~`, no `..` climbing out of `base`.
    """
    if templates.has_template(value) or not is_local(value):
        return None
    raw = value[len("file://") :] if value.startswith("file://") else value
    if raw.startswith("~"):
        return f"`{value}` starts with `~` (a home folder); use a path relative to the data folder"
    if not os.path.isabs(raw):
        normal = os.path.normpath(raw)
        if normal == ".." or normal.startswith(".." + os.sep):
            return f"`{value}` climbs out of the data folder with `..`"
    if allowed is None:
        return None
    if not inside(paths.resolve(raw, base), allowed):
        return (
            f"`{value}` is outside the allowed folders ({', '.join(allowed)}); the operator may add folders with {ENV}"
        )
    return None


def config_problem(value: str | None, info, *, with_cluster_folder: bool) -> None:
    """A pydantic field validator's body: raise ValueError when a literal path leaves its roots.

    The validation context may carry `cluster_dir` (the cluster file's folder)."""
    if not value:
        return
    context = info.context if info is not None and isinstance(info.context, dict) else {}
    cluster_dir = context.get("cluster_dir")
    allowed = (
        None if with_cluster_folder and not cluster_dir else roots(None, cluster_dir if with_cluster_folder else None)
    )
    problem = literal_problem(value, paths.data_dir(), allowed)
    if problem:
        raise ValueError(problem)
